"""Start and stop service workers as real `faststream run` processes (demo, tests, harnesses)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

SERVICE_APPS = {
    "rating": "services.rating.app:app",
    "settlement": "services.settlement.app:app",
    "invoicing": "services.invoicing.app:app",
    "payments": "services.payments.app:app",
}


@dataclass
class Workers:
    log_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, service: str, *, workers: int = 1) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{service}.log", "ab")
        command = [sys.executable, "-m", "faststream", "run", SERVICE_APPS[service], "--workers", str(workers)]
        self.processes[service] = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env}, start_new_session=True
        )

    def start_all(self) -> None:
        for service in SERVICE_APPS:
            self.start(service)

    def stop(self, service: str, *, kill: bool = False) -> None:
        process = self.processes.pop(service)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL if kill else signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def stop_all(self) -> None:
        for service in list(self.processes):
            self.stop(service)

    def crashed(self) -> list[str]:
        return [name for name, process in self.processes.items() if process.poll() is not None]
