"""Emergent zero-shot classification and cross-modal retrieval.

Zero-shot: embed each modality of held-out samples, compare with text prompts of every class
(CLIP templates, ``open_clip.build_zero_shot_classifier``) and take the best. For a spoke this
is *emergent*: the spoke only ever saw (image, X) pairs, never text. Retrieval: for every
ordered pair of modalities X -> Y, R@k = how often sample i's Y is among the k nearest Y of
sample i's X; for two spokes this is emergent too (they never met in training).

``python training/eval.py --checkpoint model.pt --config CONFIG.yaml`` evaluates a trained
checkpoint on the config's ``data.eval`` set and writes JSON (and plots with ``--plots``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python training/eval.py`: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import open_clip  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from tqdm import tqdm  # noqa: E402

from training.config import load_config  # noqa: E402
from training.data import EvalSet, build_eval_dataset  # noqa: E402
from training.model_io import model_encoders  # noqa: E402

log = logging.getLogger(__name__)
Encoder = Callable[[torch.Tensor], torch.Tensor]


def templates_from(spec: str | Sequence[str]) -> Sequence[Any]:
    """``openai`` (80 CLIP prompts), ``simple`` (open_clip's short set) or format strings."""
    if spec == "openai":
        return open_clip.OPENAI_IMAGENET_TEMPLATES
    if spec == "simple":
        return open_clip.SIMPLE_IMAGENET_TEMPLATES
    if isinstance(spec, str) or not spec or not all(isinstance(t, str) and "{}" in t
                                                     for t in spec):
        raise ValueError(f"eval.templates must be 'openai', 'simple' or a list of strings "
                         f"with one '{{}}', got {spec!r}")
    return list(spec)


@torch.no_grad()
def text_classifier(text_model: Any, classnames: Sequence[str], templates: Sequence[Any],
                    device: torch.device) -> torch.Tensor:
    """(D, K) unit-norm class prototypes: mean prompt embedding per class (as CLIP)."""
    return open_clip.build_zero_shot_classifier(
        text_model, text_model.tokenize, list(classnames), templates,
        num_classes_per_batch=10, device=device).float()


@torch.no_grad()
def embed(encoders: dict[str, Encoder], evalset: EvalSet, batch_size: int,
          device: torch.device, autocast: torch.autocast | None = None,
          ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """Unit-norm embeddings (N, D) of every modality the encoders and the set share."""
    mods = [m for m in evalset.modalities if m in encoders]
    autocast = autocast or torch.autocast("cpu", enabled=False)
    out: dict[str, list[torch.Tensor]] = {m: [] for m in mods}
    labels: list[int] = []
    n = len(evalset)
    for lo in tqdm(range(0, n, batch_size), desc="eval", unit="batch", leave=False,
                   disable=None):
        items = [evalset.load(i) for i in range(lo, min(lo + batch_size, n))]
        for m in mods:
            x = torch.stack([it[m] for it in items]).to(device)
            with autocast:
                out[m].append(F.normalize(encoders[m](x).float(), dim=-1).cpu())
        if evalset.classnames:
            labels += [evalset.label(i) for i in range(lo, min(lo + batch_size, n))]
    emb = {m: torch.cat(v) for m, v in out.items()}
    return emb, (torch.tensor(labels) if evalset.classnames else None)


def zero_shot(emb: dict[str, torch.Tensor], labels: torch.Tensor,
              classifier: torch.Tensor) -> dict[str, dict[str, float]]:
    """Top-1 (and top-5 when there are more than 5 classes) accuracy per modality."""
    k = classifier.shape[1]
    res = {}
    for m, e in emb.items():
        rank = (e @ classifier).argsort(dim=1, descending=True)
        hit = rank == labels[:, None]
        res[m] = {"top1": hit[:, 0].float().mean().item(), "chance": 1.0 / k}
        if k > 5:
            res[m]["top5"] = hit[:, :5].any(dim=1).float().mean().item()
    return res


def retrieval(emb: dict[str, torch.Tensor], ks: Sequence[int] = (1, 5),
              labels: torch.Tensor | None = None) -> dict[str, dict[str, float]]:
    """Retrieval for every ordered modality pair (query X -> gallery Y).

    ``R@k``: the query's own sample is among the k nearest gallery items (instance level:
    meaningful where modalities share the scene, e.g. depth and thermal of one view).
    ``class@1``: the nearest gallery item has the query's class (needs labels): the measure
    for modalities related only through their class (audio and depth of different events).
    """
    res = {}
    for a, ea in emb.items():
        for b, eb in emb.items():
            if a == b:
                continue
            sim = ea @ eb.T
            target = sim.diagonal()[:, None]
            # gallery items at least as close as the true one; ties count against it, so a
            # collapsed encoder (all embeddings equal) scores chance, not a perfect R@1
            rank = (sim >= target).sum(dim=1) - 1
            res[f"{a}->{b}"] = {f"R@{k}": (rank < k).float().mean().item() for k in ks}
            if labels is not None:
                nearest = sim.argmax(dim=1)
                res[f"{a}->{b}"]["class@1"] = (labels[nearest] == labels).float().mean().item()
    return res


def class_similarity(emb: dict[str, torch.Tensor], labels: torch.Tensor,
                     classifier: torch.Tensor) -> dict[str, torch.Tensor]:
    """(K, K) mean cosine between modality embeddings of class i and the prompt of class j."""
    k = classifier.shape[1]
    out = {}
    for m, e in emb.items():
        sims = e @ classifier
        out[m] = torch.stack([sims[labels == c].mean(dim=0) if (labels == c).any()
                              else torch.full((k,), float("nan")) for c in range(k)])
    return out


def evaluate(encoders: dict[str, Encoder], text_model: Any | None, evalset: EvalSet,
             templates: Sequence[Any], device: torch.device, batch_size: int = 64,
             ks: Sequence[int] = (1, 5), autocast: torch.autocast | None = None,
             ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """All metrics (JSON-ready) and the per-modality class-similarity matrices."""
    emb, labels = embed(encoders, evalset, batch_size, device, autocast)
    metrics: dict[str, Any] = {"samples": len(evalset),
                               "retrieval": retrieval(emb, ks, labels)}
    sims: dict[str, torch.Tensor] = {}
    if labels is not None and text_model is not None:
        clf = text_classifier(text_model, evalset.classnames, templates, device).cpu()
        metrics["zero_shot"] = zero_shot(emb, labels, clf)
        sims = class_similarity(emb, labels, clf)
    return metrics, sims


def format_metrics(metrics: dict[str, Any]) -> str:
    """One short line: zero-shot per modality, retrieval averaged over modality pairs."""
    parts = []
    if "zero_shot" in metrics:
        parts.append("zero-shot top1 " + " ".join(
            f"{m}={v['top1']:.3f}" for m, v in metrics["zero_shot"].items()))
    ret = list(metrics["retrieval"].values())
    for key in ("R@1", "class@1"):
        if ret and key in ret[0]:
            parts.append(f"mean {key} {sum(r[key] for r in ret) / len(ret):.3f}")
    return " | ".join(parts)


def main(argv: list[str] | None = None) -> int:
    """Evaluate a checkpoint: ``--checkpoint`` + ``--config`` (for data.eval) + overrides."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True, help="a trained checkpoint (model.pt)")
    p.add_argument("--config", help="training config YAML: its data.eval and eval sections")
    p.add_argument("--out", help="write the metrics JSON here (default: print only)")
    p.add_argument("--plots", help="write the similarity heat-map PNG here")
    p.add_argument("--device", default="cpu")
    args, overrides = p.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = load_config(args.config, overrides, check_data=False)
    if not cfg["data"]["eval"]:
        p.error("no evaluation set: give --config with data.eval or --data.eval.kind ...")
    device = torch.device(args.device)
    encoders, text_model, transforms = model_encoders(args.checkpoint, device)
    evalset = build_eval_dataset(cfg["data"]["eval"], transforms)
    metrics, sims = evaluate(encoders, text_model, evalset,
                             templates_from(cfg["eval"]["templates"]), device,
                             cfg["eval"]["batch_size"], cfg["eval"]["ks"])
    metrics["checkpoint"] = str(args.checkpoint)
    print(json.dumps(metrics, indent=1))
    log.info("%s", format_metrics(metrics))
    if args.out:
        Path(args.out).write_text(json.dumps(metrics, indent=1))
    if args.plots and sims:
        from training.plots import similarity_heatmap
        similarity_heatmap(sims, evalset.classnames, args.plots)
    return 0


if __name__ == "__main__":
    sys.exit(main())
