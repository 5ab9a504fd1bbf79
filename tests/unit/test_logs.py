import json
import logging

from shared.logs import LoggingSettings, configure_logging


def test_json_lines_carry_time_level_logger_and_message(capsys):
    root = logging.getLogger()
    kept = root.handlers[:], root.level
    try:
        configure_logging(LoggingSettings(level="INFO", format="json"))
        logging.getLogger("billing.settlement").info("run %s for %s: nothing to settle", "R-1", "C-1")
        logging.getLogger("billing.settlement").debug("below the level")
        [line] = capsys.readouterr().err.splitlines()
        record = json.loads(line)
        assert (record["level"], record["logger"], record["message"]) == (
            "INFO", "billing.settlement", "run R-1 for C-1: nothing to settle")
        assert record["time"]
    finally:
        root.handlers[:], level = kept
        root.setLevel(level)


def test_text_lines_name_the_logger(capsys):
    root = logging.getLogger()
    kept = root.handlers[:], root.level
    try:
        configure_logging(LoggingSettings(level="WARNING", format="text"))
        logging.getLogger("billing.invoicing").warning("parked")
        assert capsys.readouterr().err.rstrip().endswith("WARNING billing.invoicing: parked")
    finally:
        root.handlers[:], level = kept
        root.setLevel(level)
