"""Two CPU processes (torchrun, gloo) with batch B train to the same weights as one process with batch 2B.

The pose trainer is used because OpenPose has no batch norm (per-process batch statistics would differ from the
whole batch's) and no random draw: gradient averaging across the processes is then the only difference.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from tests.conftest import free_port

WORKER = Path(__file__).with_name("distributed_worker.py")
REPO = Path(__file__).resolve().parents[2]


def _run(processes: int, batch_size: int, models, out: Path) -> dict[str, torch.Tensor]:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(processes),
        "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
        str(WORKER), str(models), str(out), str(batch_size), "3",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    assert result.returncode == 0, result.stderr[-4000:]
    return torch.load(out / "weights" / "openpose-body" / "body_pose_model.pth", weights_only=True)


def test_two_processes_with_batch_b_match_one_process_with_batch_2b(tiny_models, tmp_path):
    one = _run(1, 4, tiny_models, tmp_path / "one")
    two = _run(2, 2, tiny_models, tmp_path / "two")
    start = torch.load(tiny_models / "openpose-body" / "body_pose_model.pth", weights_only=True)
    assert one.keys() == two.keys()
    moved = max((one[k] - start[k]).abs().max().item() for k in one)
    assert moved > 1e-4, "training changed nothing: the comparison would prove nothing"
    for key in one:
        assert torch.allclose(one[key], two[key], rtol=1e-4, atol=1e-6), key
