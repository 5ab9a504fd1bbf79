import json
import logging

from shared.logs import LoggingSettings, about_message, configure_logging


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


def test_lines_about_a_message_carry_where_it_came_from(capsys):
    root = logging.getLogger()
    kept = root.handlers[:], root.level
    try:
        configure_logging(LoggingSettings(level="INFO", format="json"))
        with about_message(consumer="rating.usage.recorded", topic="usage.recorded", partition=2, offset=None):
            with about_message(offset=41, event_id="e-1"):
                logging.getLogger("billing.rating").info("dead-lettered")
            logging.getLogger("billing.rating").info("batch done")
        logging.getLogger("billing.rating").info("idle")
        inner, outer, idle = (json.loads(line) for line in capsys.readouterr().err.splitlines())
        assert {key: inner[key] for key in ("consumer", "topic", "partition", "offset", "event_id")} == {
            "consumer": "rating.usage.recorded", "topic": "usage.recorded", "partition": "2", "offset": "41",
            "event_id": "e-1"}
        assert "offset" not in outer and outer["partition"] == "2"
        assert "consumer" not in idle

        configure_logging(LoggingSettings(level="INFO", format="text"))
        with about_message(consumer="invoicing.receivables.posted", offset=7):
            logging.getLogger("billing.invoicing").info("parked")
        assert capsys.readouterr().err.rstrip().endswith(
            "billing.invoicing: parked [consumer=invoicing.receivables.posted offset=7]")
    finally:
        root.handlers[:], level = kept
        root.setLevel(level)
