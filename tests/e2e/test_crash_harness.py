"""The crash harness, short form: SIGKILLs, duplicates and a topic replay break no invariant; and the
broker restart drill: Apache Kafka stopped mid-stream (SIGTERM, then SIGKILL) and restarted on its
log while usage is published loses and double-bills nothing, and every consumer resumes.

The full-length run is `billing crash-harness` (see README); these keep CI quick. Each runs on a
local stack of its own; its report is printed at the end of the test session.
"""

import re
import subprocess
import sys
from typing import Callable

import pytest

from ops.stack import chosen_broker

pytestmark = pytest.mark.e2e


def crash_harness(root, summary: list[str], *options: str) -> Callable[[str], int]:
    """Run `billing crash-harness` with options; returns a reader of the figures it reported."""
    result = subprocess.run(
        [sys.executable, "-m", "ops.cli", "crash-harness", *options, "--root", str(root)],
        capture_output=True, text=True, timeout=900,
    )
    report = result.stdout
    assert result.returncode == 0, f"{report}\n{result.stderr[-3000:]}"
    summary.append(f"crash-harness {' '.join(options)}:\n{report}")

    def figure(label: str) -> int:
        return int(re.search(rf"^{label}\s+(\d+)", report, re.MULTILINE).group(1))

    return figure


def test_the_pipeline_survives_kills_duplicates_and_a_replay(tmp_path, session_summary):
    figure = crash_harness(tmp_path / "harness", session_summary,
                           "--events", "400", "--contracts", "12", "--kill-every", "2", "--seed", "11")
    assert (figure("rated"), figure("lost"), figure("double-billed"), figure("violations")) == (400, 0, 0, 0)
    assert figure("workers SIGKILLed") > 0 and figure("dead letters") == 0


@pytest.mark.skipif(chosen_broker() != "kafka", reason="Tansu keeps nothing across a restart")
def test_a_broker_restarted_mid_stream_loses_and_double_bills_nothing(tmp_path, session_summary):
    figure = crash_harness(tmp_path / "restarts", session_summary, "--restart-broker",
                           "--events", "600", "--contracts", "12", "--kill-every", "0", "--seed", "13")
    assert figure("broker restarts") == 2  # one SIGTERM, one SIGKILL
    assert (figure("rated"), figure("lost"), figure("double-billed"), figure("violations")) == (600, 0, 0, 0)
    assert figure("dead letters") == 0
