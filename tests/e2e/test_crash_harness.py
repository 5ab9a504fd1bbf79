"""The crash harness, short form: SIGKILLs, duplicates and a topic replay break no invariant.

The full-length run is `billing crash-harness` (see README); this one keeps CI quick.
"""

import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e


def test_the_pipeline_survives_kills_duplicates_and_a_replay(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "ops.cli", "crash-harness", "--events", "400", "--contracts", "12",
         "--kill-every", "2", "--seed", "11", "--root", str(tmp_path / "harness")],
        capture_output=True, text=True, timeout=900,
    )
    report = result.stdout
    assert result.returncode == 0, f"{report}\n{result.stderr[-3000:]}"

    def figure(label: str) -> int:
        return int(re.search(rf"^{label}\s+(\d+)", report, re.MULTILINE).group(1))

    assert (figure("rated"), figure("lost"), figure("double-billed"), figure("violations")) == (400, 0, 0, 0)
    assert figure("workers SIGKILLed") > 0 and figure("dead letters") == 0, report
