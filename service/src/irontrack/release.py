"""The release this process runs, as the app role records it (GET /health reports it).

The app role installs each release into its own virtualenv and writes the release id to
``<virtualenv>/.irontrack-release`` once the install is complete; ``IRONTRACK_RELEASE``
overrides it. Outside such a virtualenv (development, tests) the release is ``dev``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

RELEASE_FILE = ".irontrack-release"


def current_release(prefix: str = sys.prefix) -> str:
    """The release id: $IRONTRACK_RELEASE, else the marker in the virtualenv, else "dev"."""
    value = os.environ.get("IRONTRACK_RELEASE", "").strip()
    if value:
        return value
    try:
        return (Path(prefix) / RELEASE_FILE).read_text().strip() or "dev"
    except OSError:
        return "dev"
