"""The gRPC contracts pass `buf lint` (STANDARD rules, buf.yaml at the root), and the check can fail.

buf comes from npm @bufbuild/buf, installed into .tools/bin by `bash tools/install_deploy_tools.sh`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.deploy.tools import ROOT, run, tool


def run_buf(cwd: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    # Its own cache directory: buf writes one under $HOME otherwise, and needs nothing from the network here.
    env = {**os.environ, "BUF_CACHE_DIR": str(cache)}
    return run(tool("buf"), "lint", cwd=cwd, env=env, timeout=120)


def test_protos_pass_buf_lint(tmp_path: Path) -> None:
    assert (ROOT / "buf.yaml").is_file()
    result = run_buf(ROOT, tmp_path / "cache")
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_lint_refuses_a_contract_that_breaks_the_rules(tmp_path: Path) -> None:
    """The same configuration on a copy of proto/ with a service that breaks STANDARD's naming rules fails."""
    shutil.copy(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    shutil.copytree(ROOT / "proto", tmp_path / "proto")
    pose = tmp_path / "proto" / "vton" / "v1" / "pose.proto"
    pose.write_text(pose.read_text().replace("service PoseService", "service Pose"))
    result = run_buf(tmp_path, tmp_path / "cache")
    assert result.returncode != 0
    assert 'Service name "Pose" should be suffixed with "Service"' in result.stdout
