"""Logging: plain lines for the application, bare JSON lines for the access log."""

from __future__ import annotations

import logging
import sys

from .settings import Settings

_configured = False


def configure_logging(settings: Settings) -> None:
    global _configured
    if _configured:
        return
    _configured = True
    root = logging.getLogger("irontrack")
    root.setLevel(settings.log_level)
    app_handler = logging.StreamHandler(sys.stderr)
    app_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root.addHandler(app_handler)
    root.propagate = False

    access = logging.getLogger("irontrack.access")
    access.propagate = False
    access.setLevel(logging.INFO if settings.access_log else logging.CRITICAL + 1)
    access_handler = logging.StreamHandler(sys.stdout)
    access_handler.setFormatter(logging.Formatter("%(message)s"))
    access.addHandler(access_handler)
