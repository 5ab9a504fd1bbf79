"""Logging, configured once for every process (workers, rating's API, the webhook bridge, the portal).

Level and format come from the environment: `BILLING_LOG_LEVEL` (default INFO) and
`BILLING_LOG_FORMAT` (`text`, the default, or `json`: one JSON object per line, for log
collectors). Every line has a timestamp, the level and the logger's name (`billing.<service>...`),
so an operator sees what a worker decided, including a run that found nothing to bill. A line
logged while a consumer handles a message (`about_message`, set by shared.inbox) also carries
the message's consumer, topic, partition, offset and event id: as fields of the JSON object, and
as `[consumer=... topic=...]` after the text.
"""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Iterator, Literal

from pydantic_settings import BaseSettings, SettingsConfigDict
from pythonjsonlogger.json import JsonFormatter

FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"
MESSAGE_FIELDS = ("consumer", "topic", "partition", "offset", "event_id")

# What the current task is handling; a context variable, so concurrent consumers do not mix theirs.
_message: ContextVar[dict[str, Any] | None] = ContextVar("billing_log_message", default=None)


@contextmanager
def about_message(**fields: Any) -> Iterator[None]:
    """Lines logged inside this block (by this task) carry `fields` (some of MESSAGE_FIELDS)."""
    token = _message.set({**(_message.get() or {}),
                          **{name: value for name, value in fields.items() if value is not None}})
    try:
        yield
    finally:
        _message.reset(token)


class _MessageFields(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in (_message.get() or {}).items():
            setattr(record, name, str(value))
        return True


class _TextWithMessageFields(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = " ".join(f"{name}={getattr(record, name)}" for name in MESSAGE_FIELDS if hasattr(record, name))
        return f"{line} [{fields}]" if fields else line


class LoggingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BILLING_LOG_")

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


def configure_logging(settings: LoggingSettings | None = None) -> None:
    """Send every logger's records to standard error in the configured format (idempotent)."""
    settings = settings or LoggingSettings()
    handler = logging.StreamHandler(sys.stderr)
    if settings.format == "json":
        handler.setFormatter(JsonFormatter(FIELDS, rename_fields={"asctime": "time", "levelname": "level",
                                                                  "name": "logger"}))
    else:
        handler.setFormatter(_TextWithMessageFields("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(_MessageFields())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
