"""Start and stop service workers as real processes (demo, tests, harnesses): the consumers with
`faststream run`, the HTTP edges with `uvicorn`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

SERVICE_APPS = {
    "rating": "services.rating.app:app",
    "settlement": "services.settlement.app:app",
    "invoicing": "services.invoicing.app:app",
    "payments": "services.payments.app:app",
}

HTTP_APPS = {
    "bridge": "services.payments.bridge:app",
    "portal": "services.portal.app:app",
    "rating-api": "services.rating.api:app",
    "settlement-api": "services.settlement.api:app",
}


@dataclass
class Workers:
    log_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, service: str, *, workers: int = 1) -> None:
        self._spawn(service, ["faststream", "run", SERVICE_APPS[service], "--workers", str(workers)])

    def start_http(self, name: str, port: int) -> str:
        """Serve one of HTTP_APPS on loopback; returns its base URL."""
        self._spawn(name, ["uvicorn", HTTP_APPS[name], "--host", "127.0.0.1", "--port", str(port)])
        return f"http://127.0.0.1:{port}"

    def wait_healthy(self, name: str, url: str, timeout_s: float = 60.0) -> None:
        """Until the HTTP app answers its /health/ready with 200; fails early if its process exits."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self.processes[name].poll() is not None:
                raise RuntimeError(f"{name} exited; see {self.log_dir / f'{name}.log'}")
            try:
                if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} was not healthy within {timeout_s:.0f}s")
            time.sleep(0.2)

    def _spawn(self, name: str, module_command: list[str]) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{name}.log", "ab")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", *module_command], stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, **self.env}, start_new_session=True,
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
