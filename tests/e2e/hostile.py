"""A corpus of hostile messages, derived from one valid message of a topic.

Each entry is (name, payload bytes). Every one of them must end in the dead-letter topic; none
may change any table or block the messages behind it.
"""

from __future__ import annotations

import json
from typing import Any

from shared.events import MAX_MESSAGE_BYTES

SQL_AND_CONTROL = "x'); DROP TABLE inbox; --\x00\x1b[31m\u202e"


def _with(base: dict[str, Any], **changes: Any) -> bytes:
    return json.dumps({**base, **changes}).encode()


def _raw_number(base: dict[str, Any], field: str, literal: str) -> bytes:
    """The message with `field` as a bare JSON number literal (json.dumps would quote or refuse it)."""
    marker = "__RAW_NUMBER__"
    return json.dumps({**base, field: marker}).replace(f'"{marker}"', literal).encode()


def corpus(base: dict[str, Any], *, number_field: str | None, currency_field: str | None) -> list[tuple[str, bytes]]:
    missing = {key: value for key, value in base.items() if key != "event_id"}
    messages = [
        ("not json", b"\x00\xff{garbage"),
        ("empty", b""),
        ("json array", b"[]"),
        ("json null", b"null"),
        ("unknown schema version", _with(base, schema_version=99)),
        ("missing event_id", json.dumps(missing).encode()),
        ("unknown field", _with(base, unexpected="field")),
        ("sql and control characters in contract_id", _with(base, contract_id=SQL_AND_CONTROL)),
        ("far-future timestamp", _with(base, occurred_at="2999-01-01T00:00:00Z")),
        ("naive timestamp", _with(base, occurred_at="2026-11-10T09:30:00")),
        ("oversized payload", _with(base, padding="A" * (MAX_MESSAGE_BYTES + 1))),
        ("invalid utf-8 inside a string", _with(base, contract_id="C").replace(b'"C"', b'"\xc3\x28"')),
    ]
    if number_field:
        messages += [
            ("NaN number", _with(base, **{number_field: "NaN"})),
            ("infinite number", _with(base, **{number_field: "Infinity"})),
            ("huge number", _with(base, **{number_field: "1e400"})),
            ("json float number", _raw_number(base, number_field, "1.5")),
            ("negative number", _with(base, **{number_field: "-5"})),
        ]
    if currency_field:
        messages.append(("unsupported currency", _with(base, **{currency_field: "XXX"})))
        messages.append(("currency as a number", _with(base, **{currency_field: 978})))
    return messages
