"""Log lines as JSON objects when ``COMPANION_LOG_FORMAT=json``, for a log collector.

One object per line with the time (UTC, ISO 8601), level, logger, message, process id and
thread, and the traceback when there is one. The message is the one the code wrote, so what
must never be logged (tokens, keys, passwords) is kept out by the same rule as for text logs.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping
from typing import Any


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
            "thread": record.threadName,
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure(config: Mapping[str, Any]) -> None:
    """Set the root logger's level and, for ``json``, the format of each of its handlers."""
    logging.basicConfig(level=str(config["LOG_LEVEL"]).upper())
    if config.get("LOG_FORMAT") == "json":
        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonFormatter())
