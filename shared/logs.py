"""Logging, configured once for every process (workers, rating's API, the webhook bridge, the portal).

Level and format come from the environment: `BILLING_LOG_LEVEL` (default INFO) and
`BILLING_LOG_FORMAT` (`text`, the default, or `json`: one JSON object per line, for log
collectors). Every line has a timestamp, the level and the logger's name (`billing.<service>...`),
so an operator sees what a worker decided, including a run that found nothing to bill.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict
from pythonjsonlogger.json import JsonFormatter

FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"


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
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
