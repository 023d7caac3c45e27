"""``python -m pods.image lock``: requirements.in resolved to requirements.txt, every version pinned.

Resolved for the image's interpreter (CPython 3.11 on manylinux, wheels only), not the host's,
with ``pip install --dry-run --report``: nothing is installed.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from pods.image import content, offline
from pods.image.errors import ImageBuildError

HEADER = """\
# The pod image's Python dependencies, every one pinned: made from requirements.in by
#   python -m pods.image lock
# for CPython {python} on manylinux (wheels only). The image's tag hashes this file.
"""


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def resolve() -> list[tuple[str, str]]:
    """(name, version) of everything requirements.in needs, sorted by name."""
    platforms = [arg for tag in offline.wheel_platforms() for arg in ("--platform", tag)]
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--disable-pip-version-check",
            "--report",
            str(report),
            "--only-binary=:all:",
            "--python-version",
            offline.PYTHON_VERSION,
            "--implementation",
            "cp",
            "--abi",
            "cp" + offline.PYTHON_VERSION.replace(".", ""),
            *platforms,
            "--target",
            str(Path(tmp) / "target"),
            "--requirement",
            str(content.REQUIREMENTS_IN),
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ImageBuildError(
                "pip could not resolve requirements.in", result.stderr.strip().splitlines()[-20:]
            )
        installs = json.loads(report.read_text())["install"]
    pins = {_canonical(item["metadata"]["name"]): item["metadata"]["version"] for item in installs}
    return sorted(pins.items())


def write_lock() -> str:
    text = HEADER.format(python=offline.PYTHON_VERSION)
    text += "".join(f"{name}=={version}\n" for name, version in resolve())
    content.REQUIREMENTS.write_text(text)
    return text
