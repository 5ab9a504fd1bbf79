"""Apache Kafka for the local stack: one KRaft node (broker and controller in one JVM) from the
jars on Maven Central, no tarball, no Docker.

`broker_jars()` resolves ops/kafka/pom.xml with Maven once per pinned version (ops/maven.py), so
later starts need neither Maven nor the network. `start()` writes the
node's server.properties under the stack directory, formats its log directory the first time
(`kafka.tools.StorageTool format --standalone`), starts the JVM and returns once the broker says
it has started. A restart on the same directory keeps every topic, message and committed offset.
"""

from __future__ import annotations

import base64
import re
import subprocess
import time
import uuid
from pathlib import Path

from ops.maven import MavenTool
from ops.ports import free_port

PROJECT = Path(__file__).with_name("kafka")  # pom.xml and log4j2.properties
POM = PROJECT / "pom.xml"
# Sized for a 2-core, few-GiB developer machine; the stock scripts give the broker 1 GiB.
HEAP = ("-Xms256m", "-Xmx512m")
# The client compiler (C1) only. On two cores the server compiler's (C2) threads took 30-43 % of a
# core for the first 20 s of load and 8-12 % still after 40 s, CPU the workers beside the broker
# were waiting for: in three paired probes at 1,000 events/s on a fresh stack the latency p99 was
# 161-336 ms in the first 10 s and 69-177 ms from the third 10 s on with C2, against 133-221 and
# 56-91 ms with C1 only. The broker's own steady CPU was the same (33-36 % of a core), and so was a
# billing run over 100,000 contracts (65.6 and 78.9 s with C2, 65.5 and 68.0 s with C1). A broker
# that runs for weeks on its own cores is better off with C2; this one is the local stack's.
JIT = ("-XX:TieredStopAtLevel=1",)
READY_LINE = "Kafka Server started"


KAFKA = MavenTool("kafka", POM, "kafka.version")


def pinned_version() -> str:
    return KAFKA.version


def runnable() -> bool:
    """Java 17+ here, and the jars cached or Maven to fetch them."""
    return KAFKA.runnable()


def broker_jars() -> Path:
    """The folder of the broker's jars; resolved with Maven the first time only."""
    return KAFKA.jars()


# A second listener that takes SASL/SCRAM-SHA-512 with this user only (created when the log is
# formatted), so that the clients' SASL settings are tested against a real broker. Local use only.
SCRAM_USER = "billing"
SCRAM_PASSWORD = "local-scram-password"


def server_properties(log_dir: Path, port: int, controller_port: int, scram_port: int) -> str:
    return "\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.bootstrap.servers=127.0.0.1:{controller_port}",
        f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port},"
        f"SCRAM://127.0.0.1:{scram_port}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{port},SCRAM://127.0.0.1:{scram_port}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SCRAM:SASL_PLAINTEXT",
        "sasl.enabled.mechanisms=SCRAM-SHA-512",
        "listener.name.scram.scram-sha-512.sasl.jaas.config="
        "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        f"log.dirs={log_dir}",
        # One node: every internal topic has one replica.
        "offsets.topic.replication.factor=1",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        # Fewer log files for the one node to open and recover than the default 50.
        "offsets.topic.num.partitions=8",
        # Topics are created by `billing prepare` with explicit partitions and configs, never by accident.
        "auto.create.topics.enable=false",
        # Nobody else is going to join: a group's first member need not wait 3 s for more.
        "group.initial.rebalance.delay.ms=0",
        # After a SIGKILL the restarted node may register only once the controller has given up on
        # its previous incarnation: 4 s rather than 9 s (the heartbeats never leave the process).
        "broker.session.timeout.ms=4000",
        "broker.heartbeat.interval.ms=1000",
        "",
    ])


def _controller_port(properties_file: Path) -> int:
    """The controller's port, kept across restarts: the formatted log names it as the one voter."""
    return _kept_port(properties_file, r"^controller\.quorum\.bootstrap\.servers=.*:(\d+)$")


def scram_port(root: Path) -> int:
    """The SASL/SCRAM listener's port of the node under root/kafka, kept across restarts."""
    return _kept_port(root / "kafka" / "server.properties", r"SCRAM://127\.0\.0\.1:(\d+)$")


def _kept_port(properties_file: Path, pattern: str) -> int:
    if properties_file.exists():
        found = re.search(pattern, properties_file.read_text(), re.M)
        if found:
            return int(found.group(1))
    return free_port()


def _java(jars: Path, *arguments: str) -> list[str]:
    return ["java", *HEAP, *JIT, f"-Dlog4j2.configurationFile={PROJECT / 'log4j2.properties'}",
            "-cp", str(jars / "*"), *arguments]


def cluster_id() -> str:
    """What `StorageTool random-uuid` prints (a base64url UUID), without starting a JVM for it."""
    while True:
        encoded = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not encoded.startswith("-"):  # Kafka refuses ids that would read as a command-line flag
            return encoded


def start(root: Path, port: int, timeout_s: float = 180.0) -> int:
    """Start the node under root/kafka (formatting it the first time); returns its pid once it serves."""
    jars = broker_jars()
    home = root / "kafka"
    log_dir = home / "log"
    home.mkdir(parents=True, exist_ok=True)
    properties_file = home / "server.properties"
    properties_file.write_text(server_properties(log_dir, port, _controller_port(properties_file), scram_port(root)))
    if not (log_dir / "meta.properties").exists():
        subprocess.run(_java(jars, "kafka.tools.StorageTool", "format", "--standalone",
                             "--cluster-id", cluster_id(), "--config", str(properties_file),
                             "--add-scram", f"SCRAM-SHA-512=[name={SCRAM_USER},password={SCRAM_PASSWORD}]"),
                       check=True, capture_output=True)
    broker_log = root / "broker.log"
    started_at = broker_log.stat().st_size if broker_log.exists() else 0
    with open(broker_log, "ab") as log:
        process = subprocess.Popen(_java(jars, "kafka.Kafka", str(properties_file)),
                                   stdout=log, stderr=log, start_new_session=True)
    _wait_until_serving(process, broker_log, started_at, timeout_s)
    return process.pid


def _wait_until_serving(process: subprocess.Popen, broker_log: Path, offset: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        with open(broker_log, "rb") as log:
            log.seek(offset)
            if READY_LINE.encode() in log.read():
                return
        if process.poll() is not None:
            raise RuntimeError(f"Kafka exited with {process.returncode} while starting; see {broker_log}")
        if time.monotonic() > deadline:
            process.kill()
            raise TimeoutError(f"Kafka did not start within {timeout_s:.0f}s; see {broker_log}")
        time.sleep(0.1)
