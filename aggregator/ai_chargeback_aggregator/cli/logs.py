"""Structured JSON logs, one object per line (python-json-logger), for the aggregator and the CLI.

Messages never carry secrets by construction (tokens and DSN passwords are
redacted where they are formatted); this formatter adds no request data.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from pythonjsonlogger.json import JsonFormatter

FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"
RENAMED = {"asctime": "ts", "levelname": "level", "name": "logger", "message": "msg"}


def json_formatter() -> logging.Formatter:
    return JsonFormatter(FIELDS, rename_fields=RENAMED, json_ensure_ascii=False)


def configure(level: str = "INFO", *, stream: TextIO = sys.stderr) -> None:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(json_formatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
