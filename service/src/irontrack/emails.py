"""The one normalisation of email addresses: what the unique index holds and what login looks up.

NFC (one encoding of every accented character) then ``str.lower()``. Not ``casefold()``: it
folds ``ß`` to ``ss`` and similar, merging addresses that mail systems keep apart. The stored
column is the normalised form and the unique index is on the column itself, so PostgreSQL's
collation (whose ``lower()`` leaves non-ASCII letters alone under the C locale) plays no part.
"""

from __future__ import annotations

import unicodedata


def normalize_email(email: str) -> str:
    return unicodedata.normalize("NFC", email).lower()
