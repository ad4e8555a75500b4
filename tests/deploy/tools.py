"""The checking tools the deploy and contract tests run, as `bash tools/install_deploy_tools.sh` installs them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS_BIN = ROOT / ".tools" / "bin"


def tool(name: str) -> str:
    """A tool from .tools/bin, the virtualenv or the PATH; a missing one fails with the command that installs it."""
    for candidate in (TOOLS_BIN / name, Path(sys.executable).parent / name):
        if candidate.is_file():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: run `bash tools/install_deploy_tools.sh`")
    return found


def run(*args: str, **options) -> subprocess.CompletedProcess[str]:
    """ARGS run from the repository's root, their output captured as text (OPTIONS go to subprocess.run)."""
    return subprocess.run(args, capture_output=True, text=True, **{"timeout": 60, "cwd": ROOT, **options})
