"""Two gloo processes train exactly like one process with the whole global batch.

With negatives gathered across ranks (``ClipLoss(local_loss=True, gather_with_grad=True)``)
each rank's loss is its rows' share of the global InfoNCE and the gather's backward hands the
other ranks' gradient back, so DDP's averaged gradient equals the single-process gradient.
Without the gather (or with a gather that drops gradients) both checks below fail.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from imagebind_ros.model import create_model
from training.config import load_config
from training.train import Trainer
from training.train import main as train_main

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "training" / "configs" / "tiny.yaml")
# audio and depth: no dropout anywhere, so one process and two see the same network
ARGS = ["--modalities", "audio,depth", "--log.progress", "false", "--data.eval", "null"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _first_step(out_dir: str) -> dict[str, object]:
    """Loss and gradients of the first training step (this process's view)."""
    trainer = Trainer(load_config(TINY, [*ARGS, "--out_dir", out_dir]))
    batches = {m: next(it) for m, it in trainer.loaders(0, 0).items()}
    losses = trainer.losses(batches)
    sum(losses.values()).backward()  # through DDP when world > 1: gradients averaged
    loss = torch.stack([losses[m].detach() for m in trainer.mods])
    if trainer.world > 1:
        dist.all_reduce(loss)
        loss /= trainer.world
    grads = {n: p.grad.detach().clone() for n, p in trainer.model.named_parameters()}
    return {"loss": loss, "grads": grads, "batch": {m: b["index"] for m, b in batches.items()}}


def _worker(rank: int, world: int, port: int, out_dir: str, result: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(world))
    try:
        res = _first_step(out_dir)
        batches: list[object] = [None] * world
        dist.all_gather_object(batches, res["batch"])
        if rank == 0:
            res["batch"] = {m: torch.cat([b[m] for b in batches]) for m in res["batch"]}
            torch.save(res, result)
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_give_the_single_process_loss_and_gradients(tmp_path: Path) -> None:
    single = _first_step(str(tmp_path / "one"))
    result = tmp_path / "two.pt"
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path / "two"), str(result)), nprocs=2)
    two = torch.load(result, weights_only=True)
    for m, idx in single["batch"].items():  # the two ranks split the same global batch
        assert torch.equal(two["batch"][m], idx)
    torch.testing.assert_close(two["loss"], single["loss"], rtol=1e-5, atol=1e-5)
    assert set(two["grads"]) == set(single["grads"])
    for name, g in single["grads"].items():
        torch.testing.assert_close(two["grads"][name], g, rtol=1e-5, atol=1e-5, msg=name)
    assert max(g.abs().max().item() for g in single["grads"].values()) > 1e-3


def test_torchrun_two_processes_match_one_process(tmp_path: Path) -> None:
    """The whole script under torchrun (sampler, sharded cache, DDP, checkpoints)."""
    args = ["--config", TINY, *ARGS, "--epochs", "1", "--log.tensorboard", "false"]
    assert train_main([*args, "--out_dir", str(tmp_path / "one")]) == 0
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", str(ROOT / "training" / "train.py"), *args, "--out_dir", str(tmp_path / "two")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())["epochs"][0]["loss"]
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())["epochs"][0]["loss"]
    for m, v in one.items():
        assert abs(two[m] - v) < 1e-4, (m, one, two)
    a = create_model(checkpoint=tmp_path / "one" / "model.pt").state_dict()
    b = create_model(checkpoint=tmp_path / "two" / "model.pt").state_dict()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=k)
