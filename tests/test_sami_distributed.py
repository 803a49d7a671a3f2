"""run_sami_pretraining.py under `torchrun --nproc_per_node 2` on CPU (gloo): both processes train and agree."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from test_sami_training import SCRIPT, sami_inputs, tiny_run_args  # noqa: F401  (sami_inputs is a fixture)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_process_torchrun_run_completes(sami_inputs, tmp_path):  # noqa: F811
    images, teacher = sami_inputs
    output_dir = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
        str(SCRIPT), *tiny_run_args(images, teacher, output_dir, 2, 2, "--precompute_teacher_features", "--log_level", "info"),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    state = json.loads((output_dir / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    # the learning rate was scaled by the world size: 0.3 * (4 per device * 2 processes) / 256
    assert f"Total batch size 8: learning rate {0.3 * 8 / 256:.3e}" in result.stdout + result.stderr
    assert (output_dir / "model.safetensors").exists() and (output_dir / "teacher_features" / "shard-00000").exists()
