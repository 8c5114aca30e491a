"""The training loop under ``torchrun`` with two CPU processes (gloo): ranks stay in sync and learn."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ddp_worker import make_data, make_model

from companion.train import evaluate

WORKER = Path(__file__).with_name("ddp_worker.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_end_with_identical_weights(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COMPANION_PROFILE": "smoke"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--nnodes", "1",
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(WORKER),
           str(tmp_path), "4"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert all(r["world_size"] == 2 for r in ranks)
    for key, value in ranks[0]["state"].items():
        assert torch.equal(value, ranks[1]["state"][key]), key
    assert ranks[0]["train_loss"] == ranks[1]["train_loss"]  # metrics are averaged over ranks
    assert ranks[0]["train_loss"][-1] < ranks[0]["train_loss"][0]
    assert ranks[0]["train_accuracy"][-1] > 0.9
    # validation is sharded over the ranks and summed: it must equal one evaluation of everything
    model = make_model()
    model.load_state_dict(ranks[0]["state"])
    assert ranks[0]["val_accuracy"] == ranks[1]["val_accuracy"]
    assert ranks[0]["val_accuracy"][-1] == evaluate(model, make_data(), device="cpu")["accuracy"]
    checkpoint = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert checkpoint["epoch"] == 4 and len(checkpoint["rng"]) == 2
    for key, value in ranks[0]["state"].items():
        assert torch.equal(value, checkpoint["model"][key]), key
