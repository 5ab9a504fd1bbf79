"""Listing dead letters and replaying chosen ones once their cause is fixed.

A replay publishes the original payload to its original topic with its original key; the
consumer then treats it like any message: applied once (its inbox drops it if an earlier replay
already succeeded), or dead-lettered again with the new reason.
"""

from __future__ import annotations

import uuid
from typing import Iterable

from faststream.kafka import KafkaBroker

from ops.observe import dead_letters
from shared.events import DeadLetter


def select(letters: Iterable[DeadLetter], *, topic: str | None = None, consumer: str | None = None,
           event_ids: Iterable[uuid.UUID] = ()) -> list[DeadLetter]:
    wanted = set(event_ids)
    return [
        letter for letter in letters
        if (topic is None or letter.source_topic == topic)
        and (consumer is None or letter.consumer == consumer)
        and (not wanted or letter.event_id in wanted)
    ]


def replayable(letter: DeadLetter) -> str | None:
    """Why `letter` cannot be replayed as it was received, or None if it can."""
    if letter.payload_truncated:
        return "its payload was truncated when it was dead-lettered"
    if letter.payload_encoding is None and "\\x" in letter.payload:
        return "its payload was not UTF-8 and was dead-lettered as escaped text (schema version 1)"
    return None


async def replay(broker: KafkaBroker, letters: Iterable[DeadLetter]) -> list[tuple[DeadLetter, str | None]]:
    """Republish each letter's payload; returns each letter with the reason it was skipped, if any."""
    outcomes: list[tuple[DeadLetter, str | None]] = []
    for letter in letters:
        problem = replayable(letter)
        if problem is None:
            await broker.publish(
                letter.original_payload(), letter.source_topic, key=letter.key.encode() if letter.key else None
            )
        outcomes.append((letter, problem))
    return outcomes


async def list_letters(bootstrap_servers: str, **criteria) -> list[DeadLetter]:
    return select(await dead_letters(bootstrap_servers), **criteria)
