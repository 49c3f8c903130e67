"""ASGI entry point.

``granian irontrack.main:app --interface asgi`` or ``uvicorn irontrack.main:app``.
"""

from __future__ import annotations

import sys

from .keys import KeyError_
from .settings import ConfigError

try:
    from .app import create_app

    app = create_app()
except (ConfigError, KeyError_) as _error:
    print(f"irontrack: {_error}", file=sys.stderr)
    raise SystemExit(2) from None
