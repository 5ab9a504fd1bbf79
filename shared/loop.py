"""The one background loop every worker task runs on: the outbox relay, the re-drive of parked
messages, settlement's billing scheduler and rating's period close.

A loop calls its `tick` again and again: at once when the tick says more work is waiting or when
someone `wake()`s it, otherwise after `interval_s`. A tick that fails is logged and tried again
after a capped backoff; the loop itself never dies of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Awaitable, Callable

# A tick returns True when it left work behind (a full batch), so the loop goes on without waiting.
Tick = Callable[[], Awaitable[bool]]


class BackgroundLoop:
    def __init__(self, name: str, tick: Tick, interval_s: float, log: logging.Logger,
                 max_backoff_s: float = 5.0) -> None:
        self.name = name
        self.tick = tick
        self.interval_s = interval_s
        self.log = log
        self.max_backoff_s = max_backoff_s
        self._task: asyncio.Task[None] | None = None
        self._woken = asyncio.Event()

    def start(self) -> None:
        """Start on the running event loop; an interval of 0 or less means this loop is turned off."""
        if self.interval_s > 0 and self._task is None:
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def wake(self) -> None:
        """Work arrived: tick now rather than at the end of the interval."""
        self._woken.set()

    async def _run(self) -> None:
        failures = 0
        while True:
            self._woken.clear()
            try:
                more = await self.tick()
                failures = 0
            except Exception:
                failures += 1
                self.log.exception("%s failed; trying again", self.name)
                await asyncio.sleep(min(0.1 * 2**failures, self.max_backoff_s))
                continue
            if not more:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._woken.wait(), self.interval_s)
