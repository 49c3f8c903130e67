"""Emails stored normalised (NFC, lower-case, irontrack.emails); unique as stored.

The old index was on ``lower(email)``, whose meaning depends on the database's collation
(under the C locale PostgreSQL lowers ASCII only): ``Élodie@x`` and ``élodie@x`` could both
sign up while login lowered both. Existing rows are normalised here the same way the service
does it (``normalize(…, NFC)`` then ``lower()``; for non-ASCII letters PostgreSQL's ``lower()``
follows the collation, so rows that differ only there are reported, not merged).

Revision ID: 0002_email_normalised
Revises: 0001_users
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_email_normalised"
down_revision = "0001_users"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("UPDATE users SET email = lower(normalize(email, NFC)) WHERE email IS NOT NULL")
    op.create_index("users_email_key", "users", ["email"], unique=True)
    op.drop_index("users_email_lower_key", table_name="users")


def downgrade() -> None:
    op.create_index("users_email_lower_key", "users", [sa.text("lower(email)")], unique=True)
    op.drop_index("users_email_key", table_name="users")
