"""Shared by scripts/run and scripts/test: a virtualenv with the pinned requirements.

Standard library only: this runs before anything is installed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("VENV_DIR", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def ensure_venv(requirements: str = "requirements-dev.txt") -> Path:
    if sys.version_info < (3, 11):  # noqa: UP036 - this script may be started by any python3
        sys.exit(f"Python 3.11 or newer is required (this is {sys.version.split()[0]}).")
    if not PYTHON.exists():
        say(f"creating virtualenv in {VENV}")
        venv.EnvBuilder(with_pip=True).create(VENV)
    lock = ROOT / "requirements.lock"
    files = [ROOT / requirements, ROOT / "requirements.txt", lock]
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()
    # One stamp per requirements file: scripts/run and scripts/test take turns without
    # reinstalling everything each time.
    stamp = VENV / f".{requirements}.sha256"
    if not stamp.exists() or stamp.read_text() != digest:
        say(f"installing {requirements} (pinned)")
        subprocess.run([PYTHON, "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
        # The runtime first, exactly as the image installs it (every version and hash from the
        # lock), then the tools on top: tests run what ships.
        subprocess.run([PYTHON, "-m", "pip", "install", "-q", "--require-hashes", "-r", lock], check=True)
        subprocess.run([PYTHON, "-m", "pip", "install", "-q", "-r", ROOT / requirements], check=True)
        stamp.write_text(digest)
    return PYTHON


def manage(*args: str, env: dict[str, str] | None = None) -> None:
    subprocess.run([PYTHON, ROOT / "manage.py", *args], check=True, cwd=ROOT, env=env)


if __name__ == "__main__":
    ensure_venv()
