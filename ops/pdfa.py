"""PDF/A conformance of the documents' PDFs, checked by veraPDF (the PDF Association's reference
validator, from Maven Central through ops/verapdf/pom.xml): `python -m ops.pdfa FILE.pdf...`."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ops.maven import MavenTool

VERAPDF = MavenTool("verapdf", Path(__file__).with_name("verapdf") / "pom.xml", "verapdf.version")


@dataclass(frozen=True, slots=True)
class Verdict:
    passed: bool
    report: str


def validate(*pdfs: Path, flavour: str = "3b") -> dict[Path, Verdict]:
    """Each file's verdict against PDF/A-`flavour` (3b: PDF/A-3 level B, what Factur-X requires)."""
    ran = subprocess.run(
        ["java", "-Xmx512m", "-cp", VERAPDF.classpath(), "org.verapdf.apps.GreenfieldCliWrapper",
         "--flavour", flavour, "--format", "text", *map(str, pdfs)],
        capture_output=True, text=True, timeout=300)
    verdicts = {}
    for line in ran.stdout.splitlines():
        verdict, _, rest = line.partition(" ")
        path = Path(rest.rsplit(" ", 1)[0])
        if verdict in ("PASS", "FAIL") and path in pdfs:
            verdicts[path] = Verdict(verdict == "PASS", line)
    missing = [pdf for pdf in pdfs if pdf not in verdicts]
    if missing:
        raise RuntimeError(f"veraPDF gave no verdict on {missing}: {ran.stdout[-2000:]} {ran.stderr[-2000:]}")
    return verdicts


if __name__ == "__main__":
    results = validate(*map(Path, sys.argv[1:]))
    for verdict in results.values():
        print(verdict.report)
    sys.exit(0 if all(verdict.passed for verdict in results.values()) else 1)
