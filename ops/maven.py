"""Java tools from Maven Central, without tarballs: a pom's runtime jars, resolved with Maven once
per machine into a cache folder outside the work tree (~/.cache/billing, or
$BILLING_KAFKA_CACHE_DIR, its name from when Kafka was the only such tool), so every clone on the
machine shares them and later runs need neither Maven nor the network.

Each pom names its tool's version in a property and copies its runtime dependencies to
`${libs.dir}` in the package phase (maven-dependency-plugin's copy-dependencies).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

MIN_JAVA = 17
POM_NAMESPACE = "{http://maven.apache.org/POM/4.0.0}"


def java_version() -> int | None:
    """The major version of the `java` on PATH (None without one)."""
    if shutil.which("java") is None:
        return None
    banner = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr
    found = re.search(r'version "(\d+)(?:\.(\d+))?', banner)
    if not found:
        return None
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major  # "1.8.0" is Java 8


@dataclass(frozen=True, slots=True)
class MavenTool:
    """A tool whose jars `pom` resolves; `version_property` names its version in the pom."""

    name: str
    pom: Path
    version_property: str

    @property
    def version(self) -> str:
        properties = ElementTree.parse(self.pom).getroot().find(f"{POM_NAMESPACE}properties")
        return properties.findtext(f"{POM_NAMESPACE}{self.version_property}")

    def cache_dir(self) -> Path:
        """Named by version and by the pom's content, so a changed pom never reuses jars of the old one."""
        root = Path(os.environ.get("BILLING_KAFKA_CACHE_DIR") or Path.home() / ".cache" / "billing")
        digest = hashlib.sha256(self.pom.read_bytes()).hexdigest()[:12]
        return root / f"{self.name}-{self.version}-{digest}"

    def cached(self) -> bool:
        return (self.cache_dir() / ".complete").exists()

    def runnable(self) -> bool:
        """Java 17+ here, and the jars cached or Maven to fetch them."""
        return (java_version() or 0) >= MIN_JAVA and (self.cached() or shutil.which("mvn") is not None)

    def jars(self) -> Path:
        """The folder of the tool's jars; resolved with Maven the first time only."""
        cache = self.cache_dir()
        libs = cache / "libs"
        cache.mkdir(parents=True, exist_ok=True)
        with open(cache / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two processes starting at once resolve it once
            if self.cached():
                return libs
            print(f"resolving {self.name} {self.version} from Maven Central into {cache} (once per machine)",
                  flush=True)
            shutil.rmtree(libs, ignore_errors=True)
            shutil.copy(self.pom, cache / "pom.xml")  # Maven's target/ then lands in the cache, not the work tree
            with open(cache / "maven.log", "wb") as log:
                built = subprocess.run(["mvn", "-B", "-q", "-f", str(cache / "pom.xml"), "package",
                                        f"-Dlibs.dir={libs}"], stdout=log, stderr=subprocess.STDOUT)
            if built.returncode != 0:
                raise RuntimeError(f"Maven could not resolve {self.name}'s jars; see {cache / 'maven.log'}")
            (cache / ".complete").touch()
        return libs

    def classpath(self) -> str:
        return str(self.jars() / "*")
