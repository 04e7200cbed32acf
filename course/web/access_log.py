"""Tokens masked in uvicorn's access log: signed links sit in URL paths, and a log line must not be
a working unsubscribe or preferences link for whoever reads the logs. The app installs the filter
(course/web/app.py), whichever server runs it."""

from __future__ import annotations

import logging
import re

# The paths whose last segment is a signed token (course.delivery.links.PATHS).
_TOKEN_PATH = re.compile(r"^(/(?:u|preferences|view|confirm)/)([^/?#]{6})[^/?#]*")


def mask_tokens(path: str) -> str:
    """'/u/WzEsMl0.aBc.XyZ' -> '/u/WzEsMl…': enough to tell two requests apart, not to use one."""
    return _TOKEN_PATH.sub(r"\1\2…", path)


class MaskTokens(logging.Filter):
    """On uvicorn's access logger: its records carry the path as their third argument."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], mask_tokens(args[2]), *args[3:])
        return True


def install_access_log_masking() -> None:
    access_logger = logging.getLogger("uvicorn.access")
    if not any(isinstance(existing, MaskTokens) for existing in access_logger.filters):
        access_logger.addFilter(MaskTokens())
