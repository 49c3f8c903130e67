"""Application logging (the access log is middleware.AccessLogWriter's)."""

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
