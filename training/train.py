"""Bind new encoders to a frozen image/text hub with (image, X) pairs only.

    python training/train.py --config CONFIG.yaml [--dotted.key value ...]
    torchrun --nproc_per_node N training/train.py --config CONFIG.yaml
    python training/train.py --config CONFIG.yaml --resume latest

Per spoke X, symmetric InfoNCE between the hub's image embedding and X's embedding with the
paper's fixed temperature (open_clip's ``ClipLoss``, negatives gathered across processes
with gradients). The hub is frozen and, by default, its image embeddings are computed once
and read from a cache. ``stage: hub`` instead trains a small image/text hub CLIP-style
(both towers, learnable temperature) -- step one of the synthetic demonstration.

Every epoch (and on SIGTERM) an atomic checkpoint ``<out_dir>/latest.pt`` stores the model,
optimizer, scheduler, grad scaler, RNG states and the data position; ``--resume latest``
continues exactly. ``<out_dir>/model.pt`` is the deployable model (``create_model`` loads
it); ``metrics.json``, TensorBoard logs, ``curves.png`` and ``similarity.png`` lie beside it.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python training/train.py`: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from open_clip.loss import ClipLoss  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402
from tqdm import tqdm  # noqa: E402

from imagebind_ros.model import ImageBindModel  # noqa: E402
from imagebind_ros.model.checkpoint import read_checkpoint  # noqa: E402
from imagebind_ros.synthetic import BACKGROUND_CAPTIONS  # noqa: E402
from training import cache as hub_cache  # noqa: E402
from training.config import load_config  # noqa: E402
from training.dense_objective import DenseObjective  # noqa: E402
from training.data import (EpochPlan, PairDataset, Transforms, build_eval_dataset,  # noqa: E402
                           build_pair_dataset, pair_loader, stable_seed)
from training.eval import evaluate, format_metrics, templates_from  # noqa: E402
from training.hub import Hub, load_hub  # noqa: E402
from training.model_io import (TextTower, build_config, image_transform,  # noqa: E402
                               save_trained, should_embed)

log = logging.getLogger("training")
STOPPED = 143  # exit status after a SIGTERM checkpoint (128 + SIGTERM), as shells report it


def contrastive_loss(loss_fn: ClipLoss, anchor: torch.Tensor, x: torch.Tensor,
                     logit_scale: float | torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE of (anchor_i, x_i) against every pair in the global batch.

    ``loss_fn`` is open_clip's ``ClipLoss(local_loss=True, gather_with_grad=True, ...)``:
    each process scores its rows against the gathered columns of all processes, and the
    gather's backward returns the other processes' gradient share, so DDP's gradient mean
    equals the gradient of the loss over the whole global batch.
    """
    return loss_fn(anchor, x, logit_scale)


def lr_lambda(warmup: int, total: int, min_ratio: float) -> Any:
    """Linear warmup to 1, then cosine decay to ``min_ratio`` at step ``total``."""
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t))
    return f


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases, norms, tokens, position embeddings and scales (as CLIP)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        flat = p.ndim < 2 or any(k in name for k in ("cls_token", "pos_embed", "bias_k",
                                                      "bias_v", "logit_scale"))
        (no_decay if flat else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


class Trainer:
    """One training run (one process of it under torchrun)."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self._setup_distributed()
        if cfg["threads"]:
            torch.set_num_threads(int(cfg["threads"]))
        self.out_dir = Path(cfg["out_dir"])
        if self.rank == 0:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        self.stage = cfg["stage"]
        self.mods: list[str] = list(cfg["modalities"])
        self.hub: Hub | None = None
        if self.stage == "spokes":
            self.hub = load_hub(cfg["hub"]).to(self.device)
            self.embed_hub = should_embed(self.hub, cfg["hub"]["embed"],
                                          cfg["hub"]["embed_max_params"])
        self.config = build_config(cfg, self.hub.out_dim if self.hub else None)
        torch.manual_seed(int(cfg["seed"]))
        self.model = ImageBindModel(self.config).to(self.device)
        torch.manual_seed(stable_seed(cfg["seed"], "rank", self.rank))  # dropout per rank
        image_tf = self.hub.image_transform if self.hub else image_transform(self.config)
        self.transforms = Transforms(self.config, image_tf)
        self.datasets: dict[str, PairDataset] = {
            m: build_pair_dataset(cfg["data"]["train"][m], m, self.transforms)
            for m in self.mods}
        self.evalset = (build_eval_dataset(cfg["data"]["eval"], self.transforms)
                        if cfg["data"]["eval"] and self.rank == 0 else None)
        self.plan = EpochPlan(
            sizes={m: len(d) for m, d in self.datasets.items()},
            views={m: d.num_views or 0 for m, d in self.datasets.items()},
            replicate={m: int(r) for m, r in cfg["data"]["replicate"].items()},
            global_batch=int(cfg["batch_size"]), seed=int(cfg["seed"]),
            steps_override=cfg["data"]["steps_per_epoch"])
        if self.plan.global_batch % self.world:
            raise ValueError(f"batch_size {self.plan.global_batch} is not divisible by the "
                             f"{self.world} processes")
        self.caches = self._build_caches()
        self.dense = self._dense_objective()
        self._setup_optim()
        self.loss_fn = ClipLoss(local_loss=True, gather_with_grad=True, cache_labels=True,
                                rank=self.rank, world_size=self.world)
        self.ddp: torch.nn.Module = self.model
        if self.world > 1:
            self.ddp = DistributedDataParallel(
                self.model, device_ids=[self.device] if self.device.type == "cuda" else None)
        self.epoch, self.step_in_epoch = 0, 0
        self.history: list[dict[str, Any]] = []
        self.sums: dict[str, float] = {}
        self._stop = False
        self.writer = None
        if cfg["resume"]:
            self._resume(cfg["resume"])

    # ------------------------------------------------------------------ setup
    def _setup_distributed(self) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        want = self.cfg["device"]
        cuda = torch.cuda.is_available() and want != "cpu"
        if want == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("device cuda requested but no GPU is available")
        self.device = torch.device(f"cuda:{local}" if cuda else "cpu")
        if cuda:
            torch.cuda.set_device(self.device)
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if cuda else "gloo")
        if dist.is_initialized():
            self.world, self.rank = dist.get_world_size(), dist.get_rank()
        prec = self.cfg["precision"]
        if prec == "fp16" and not cuda:
            raise ValueError("precision fp16 needs a GPU; use bf16 or fp32 on the CPU")
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(prec)
        self.autocast_args = {"device_type": self.device.type, "dtype": dtype,
                              "enabled": dtype is not None}
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=prec == "fp16")

    def _dense_objective(self) -> DenseObjective | None:
        dcfg = self.cfg["dense"]
        if not float(dcfg["weight"]):
            return None
        ds = self.datasets["text"]
        names = getattr(ds, "classnames", None)
        if names is None:
            raise ValueError("dense.weight needs text pairs with object boxes (data kind "
                             "synthetic)")
        return DenseObjective(self.model, self.transforms.text([dcfg["prompt"].format(n)
                                                                for n in names]),
                              self.transforms.text(list(BACKGROUND_CAPTIONS)),
                              dcfg["variant"], float(dcfg["temperature"]))

    def autocast(self) -> torch.autocast:
        return torch.autocast(**self.autocast_args)

    def _build_caches(self) -> dict[str, np.ndarray]:
        ccfg = self.cfg["cache"]
        if self.hub is None or not ccfg["enabled"]:
            return {}
        caches = {}
        cache_dir = ccfg["dir"] or self.out_dir / "hub_cache"
        for m, ds in self.datasets.items():
            if not ds.num_views:
                log.warning("%s: unbounded augmentation, hub features computed every step", m)
                continue
            caches[m] = hub_cache.load_or_build(
                self.hub, ds, cache_dir, self.device, int(ccfg["batch_size"]), ccfg["dtype"],
                self.autocast(), int(self.cfg["data"]["num_workers"]), self.rank, self.world)
        return caches

    def _setup_optim(self) -> None:
        o = self.cfg["optim"]
        self.optimizer = torch.optim.AdamW(
            param_groups(self.model, float(o["weight_decay"])), lr=float(o["lr"]),
            betas=tuple(float(b) for b in o["betas"]), eps=float(o["eps"]),
            fused=True)  # one kernel per step instead of a dozen per tensor
        self.total_steps = int(self.cfg["epochs"]) * self.plan.steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(int(o["warmup_steps"]), self.total_steps,
                                      float(o["min_lr_ratio"])))

    # ------------------------------------------------------------------ checkpoints
    def _rng_state(self) -> dict[str, Any]:
        state = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def _gather_rng(self) -> list[dict[str, Any]]:
        mine = self._rng_state()
        if self.world == 1:
            return [mine]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, {k: v.cpu() for k, v in mine.items()})
        return out

    def save(self, path: Path, final: bool = False) -> None:
        """Rank 0 writes; the RNG states of all ranks are gathered first (a collective)."""
        rngs = self._gather_rng()
        if self.rank != 0:
            return
        extra: dict[str, Any] = {"train_config": self.cfg, "history": self.history}
        if not final:
            extra["train"] = {
                "epoch": self.epoch, "step": self.step_in_epoch, "world_size": self.world,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "rng": rngs, "sums": dict(self.sums)}
        save_trained(path, self.model, self.hub, getattr(self, "embed_hub", False), **extra)

    def _resume(self, which: str) -> None:
        path = self.out_dir / "latest.pt" if which == "latest" else Path(which)
        if not path.is_file():
            if which == "latest":
                log.warning("no %s yet: starting from scratch", path)
                return
            raise FileNotFoundError(f"resume checkpoint not found: {path}")
        ckpt = read_checkpoint(path)
        if "train" not in ckpt:
            raise ValueError(f"{path} holds no training state (a final model.pt?): resume "
                             "from latest.pt")
        if self.hub is not None and ckpt.get("hub") != self.hub.reference:
            raise ValueError(f"{path} was trained against hub {ckpt.get('hub')}, this run "
                             f"uses {self.hub.reference}")
        own = self.model.state_dict()
        self.model.load_state_dict({k: v for k, v in ckpt["state_dict"].items() if k in own})
        st = ckpt["train"]
        self.optimizer.load_state_dict(st["optimizer"])
        self.scheduler.load_state_dict(st["scheduler"])
        self.scaler.load_state_dict(st["scaler"])
        self.epoch, self.step_in_epoch = int(st["epoch"]), int(st["step"])
        self.history, self.sums = list(ckpt.get("history", [])), dict(st["sums"])
        if st["world_size"] != self.world:
            log.warning("resuming a %d-process run with %d processes: data order and RNG "
                        "streams differ from an uninterrupted run", st["world_size"], self.world)
        else:
            rng = st["rng"][self.rank]
            torch.set_rng_state(rng["torch"])
            if "cuda" in rng and self.device.type == "cuda":
                torch.cuda.set_rng_state(rng["cuda"], self.device)
        old = {k: v for k, v in ckpt.get("train_config", {}).items()
               if k not in ("resume", "epochs")}
        diff = sorted(k for k, v in old.items() if self.cfg.get(k) != v)
        if diff:
            log.warning("resuming with a config that differs in %s", diff)
        if self.rank == 0:
            log.info("resumed from %s at epoch %d step %d", path, self.epoch + 1,
                     self.step_in_epoch)

    # ------------------------------------------------------------------ training
    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self._stop = True

    def _anchor(self, m: str, batch: dict[str, Any]) -> torch.Tensor:
        """The frozen hub's unit-norm image embedding of each pair (cache or live)."""
        if m in self.caches:
            return hub_cache.lookup(self.caches[m], batch["index"], batch["view"]).to(
                self.device, non_blocking=True)
        assert self.hub is not None
        with torch.no_grad(), self.autocast():
            return self.hub.encode_image(batch["vision"].to(self.device)).float()

    def losses(self, batches: dict[str, dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Per-modality contrastive losses of one step (this process's share)."""
        self.ddp.train()
        dev = self.device
        if self.stage == "hub":
            b = batches["text"]
            with self.autocast():
                out = self.ddp({"vision": b["vision"].to(dev), "text": b["text"].to(dev)})
            # text comes out as unit * learnable logit scale: scores are scaled cosines
            losses = {"text": contrastive_loss(self.loss_fn, F.normalize(out["vision"].float()),
                                               out["text"].float(), 1.0)}
            if self.dense is not None:
                with self.autocast():
                    losses["dense"] = float(self.cfg["dense"]["weight"]) * self.dense(
                        b["vision"].to(dev), b["object_box"], b["class_id"])
            return losses
        anchors = {m: self._anchor(m, batches[m]) for m in self.mods}
        with self.autocast():
            out = self.ddp({m: batches[m][m].to(dev, non_blocking=True) for m in self.mods})
        temps = self.cfg["temperature"]
        return {m: contrastive_loss(self.loss_fn, anchors[m], F.normalize(out[m].float()),
                                    1.0 / float(temps[m])) for m in self.mods}

    def train_step(self, batches: dict[str, dict[str, Any]]) -> dict[str, torch.Tensor]:
        losses = self.losses(batches)
        total = sum(losses.values())
        self.scaler.scale(total).backward()
        clip = float(self.cfg["optim"]["grad_clip"])
        if clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return losses

    def _sync(self, losses: dict[str, torch.Tensor]) -> tuple[dict[str, float], bool]:
        """Global mean losses and whether any process was asked to stop (one all-reduce)."""
        v = torch.stack([t.detach().float() for t in losses.values()]
                        + [torch.tensor(float(self._stop), device=self.device)])
        if self.world > 1:
            dist.all_reduce(v)
            v[:-1] /= self.world
        vals = v.tolist()
        return dict(zip(losses, vals[:-1])), vals[-1] > 0

    def loaders(self, epoch: int, start: int) -> dict[str, Any]:
        """Per modality, an iterator over this rank's batches from ``start`` to epoch end
        (images are loaded only for modalities whose hub features are not cached)."""
        nw = int(self.cfg["data"]["num_workers"])
        return {m: pair_loader(ds, self.plan.batches(m, epoch, start, self.rank, self.world),
                               image=m not in self.caches, num_workers=nw,
                               seed=stable_seed(self.cfg["seed"], epoch, m, self.rank),
                               pin_memory=self.device.type == "cuda")
                for m, ds in self.datasets.items()}

    def train_epoch(self) -> bool:
        """Run the rest of the current epoch; False if stopped by SIGTERM (checkpointed)."""
        e, start, steps = self.epoch, self.step_in_epoch, self.plan.steps
        loaders = self.loaders(e, start)
        per_step = self.plan.global_batch * len(self.mods)
        bar = tqdm(total=steps, initial=start, desc=f"epoch {e + 1}/{self.cfg['epochs']}",
                   unit="step", dynamic_ncols=True,
                   disable=not (self.cfg["log"]["progress"] and self.rank == 0))
        every = int(self.cfg["log"]["every"])
        t0, done = time.perf_counter(), 0
        for step in range(start, steps):
            losses, stop = self._sync(self.train_step({m: next(it)
                                                       for m, it in loaders.items()}))
            for m, v in losses.items():
                self.sums[m] = self.sums.get(m, 0.0) + v
            self.step_in_epoch, done = step + 1, done + 1
            rate = done * per_step / (time.perf_counter() - t0)
            loss = sum(losses.values())
            bar.set_postfix(loss=f"{loss:.3f}", samples_s=f"{rate:.1f}",
                            lr=f"{self.scheduler.get_last_lr()[0]:.2e}")
            bar.update()
            gstep = e * steps + step + 1
            if self.writer is not None:
                for m, v in losses.items():
                    self.writer.add_scalar(f"train/loss_{m}", v, gstep)
                self.writer.add_scalar("train/lr", self.scheduler.get_last_lr()[0], gstep)
                self.writer.add_scalar("train/samples_per_s", rate, gstep)
            if every and self.rank == 0 and (step + 1) % every == 0:
                print(f"epoch {e + 1} step {step + 1}/{steps} loss {loss:.4f} "
                      f"{rate:.1f} samples/s", flush=True)
            if stop:
                bar.close()
                self.save(self.out_dir / "latest.pt")
                if self.rank == 0:
                    print(f"stopped by SIGTERM at epoch {e + 1} step {step + 1}: checkpoint "
                          f"{self.out_dir / 'latest.pt'}; continue with --resume latest",
                          flush=True)
                return False
        bar.close()
        self.last_rate = done * per_step / max(time.perf_counter() - t0, 1e-9)
        return True

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """Held-out zero-shot and retrieval with the current weights (rank 0)."""
        assert self.evalset is not None
        model = self.model.eval()
        encoders = {m: (lambda x, m=m: model.encode(m, x)) for m in model.modalities
                    if m != "text"}
        text_model: Any = TextTower(model)
        if self.hub is not None:
            encoders["vision"] = self.hub.encode_image
            text_model = self.hub
        ecfg = self.cfg["eval"]
        metrics, sims = evaluate(encoders, text_model, self.evalset,
                                 templates_from(ecfg["templates"]), self.device,
                                 int(ecfg["batch_size"]), ecfg["ks"],
                                 torch.autocast(**self.autocast_args))
        model.train()
        return metrics, sims

    def _end_epoch(self) -> None:
        e, last = self.epoch, self.epoch + 1 == int(self.cfg["epochs"])
        every = int(self.cfg["eval"]["every"])
        entry: dict[str, Any] = {
            "epoch": e + 1, "loss": {m: s / self.plan.steps for m, s in self.sums.items()},
            "lr": self.scheduler.get_last_lr()[0],
            "samples_per_s": getattr(self, "last_rate", float("nan"))}
        sims: dict[str, torch.Tensor] = {}
        if self.evalset is not None and (last or (every and (e + 1) % every == 0)):
            entry["eval"], sims = self.evaluate()
            log.info("epoch %d: %s", e + 1, format_metrics(entry["eval"]))
            if self.writer is not None:
                for m, v in entry["eval"].get("zero_shot", {}).items():
                    self.writer.add_scalar(f"eval/zero_shot_top1_{m}", v["top1"], e + 1)
                for pair, v in entry["eval"]["retrieval"].items():
                    self.writer.add_scalar(f"eval/R@1_{pair}", v["R@1"], e + 1)
        if self.rank == 0:
            self.history.append(entry)
            losses = " ".join(f"{m}={v:.4f}" for m, v in entry["loss"].items())
            log.info("epoch %d/%s done: loss %s", e + 1, self.cfg["epochs"], losses)
        self.epoch, self.step_in_epoch, self.sums = e + 1, 0, {}
        self.save(self.out_dir / "latest.pt")
        self.save(self.out_dir / "model.pt", final=True)
        if self.rank == 0:
            self._write_reports(sims)
            log.info("checkpoint %s saved after epoch %d", self.out_dir / "latest.pt", e + 1)

    def _write_reports(self, sims: dict[str, torch.Tensor]) -> None:
        out = {"name": self.cfg["name"], "stage": self.stage, "epochs": self.history}
        tmp = self.out_dir / ".metrics.json.tmp"
        tmp.write_text(json.dumps(out, indent=1))
        os.replace(tmp, self.out_dir / "metrics.json")
        if self.cfg["eval"]["plots"]:
            from training.plots import similarity_heatmap, training_curves
            training_curves(self.history, self.out_dir / "curves.png")
            if sims and self.evalset is not None and self.evalset.classnames:
                similarity_heatmap(sims, self.evalset.classnames,
                                   self.out_dir / "similarity.png")

    def run(self) -> int:
        """Train to the last epoch, or until SIGTERM (then checkpoint and return 143)."""
        prev = signal.getsignal(signal.SIGTERM)
        in_main = threading.current_thread() is threading.main_thread()
        if in_main:
            signal.signal(signal.SIGTERM, self._on_sigterm)
        if self.rank == 0 and self.cfg["log"]["tensorboard"]:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(self.out_dir / "tb"))
        try:
            if self.rank == 0:
                n = sum(p.numel() for p in self.model.parameters())
                log.info("training %s (%s, %.2fM parameters) for %s epochs x %d steps, "
                         "global batch %d per modality, %d process(es) on %s",
                         ", ".join(self.mods), self.stage, n / 1e6, self.cfg["epochs"],
                         self.plan.steps, self.plan.global_batch, self.world, self.device)
            while self.epoch < int(self.cfg["epochs"]):
                if not self.train_epoch():
                    return STOPPED
                self._end_epoch()
            return 0
        finally:
            if in_main:
                signal.signal(signal.SIGTERM, prev)
            if self.writer is not None:
                self.writer.close()


def main(argv: list[str] | None = None) -> int:
    """Train from ``--config`` plus ``--key value`` overrides; returns the exit status."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                epilog="Any config key can be overridden: --optim.lr 3e-4")
    p.add_argument("--config", help="training config YAML (see training/configs/)")
    args, overrides = p.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                        datefmt="%H:%M:%S")
    cfg = load_config(args.config, overrides)
    trainer = Trainer(cfg)
    distributed = trainer.world > 1 and dist.is_initialized() and "RANK" in os.environ
    finished = False
    try:
        status = trainer.run()
        finished = True
        return status
    finally:
        if distributed:
            if finished:
                _quiesce_gloo()
            del trainer  # DDP's reducer holds the process group: free it while it is alive
            dist.destroy_process_group()


def _quiesce_gloo(timeout_s: float = 120.0) -> None:
    """Meet the other ranks before tearing the process group down.

    gloo's worker threads free finished work (and its tensors, which needs the GIL) after
    the collective returns; ProcessGroupGloo's destructor joins those threads while holding
    the GIL, so tearing down at that moment deadlocks at exit (seen about 1 run in 8). The
    barrier runs on the same threads after that work, and the wait releases the GIL.
    """
    if dist.get_backend() != "gloo":
        return
    from datetime import timedelta

    try:
        dist.monitored_barrier(timeout=timedelta(seconds=timeout_s))
    except RuntimeError as e:  # a rank died: exit anyway, the launcher reports it
        log.warning("ranks did not meet before shutdown: %s", e)


if __name__ == "__main__":
    sys.exit(main())
