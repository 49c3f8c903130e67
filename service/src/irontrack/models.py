"""ORM models."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, Index, String, Uuid, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(Uuid(as_uuid=True), primary_key=True)
    email: Mapped[str] = mapped_column(String(254), nullable=False)
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )

    # The column holds the normalised address (irontrack.emails); unique as stored.
    __table_args__ = (Index("users_email_key", email, unique=True),)
    # Never fetch server defaults back after INSERT (no RETURNING, no refresh SELECT).
    __mapper_args__ = {"eager_defaults": False}  # noqa: RUF012 - SQLAlchemy's own contract


EMAIL_UNIQUE_INDEX = "users_email_key"
