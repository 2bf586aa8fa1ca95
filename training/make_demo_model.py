"""Make the committed demo model ``checkpoints/demo/demo.pt`` from the SYNTHETIC world.

    python training/make_demo_model.py            # what `make demo-model` runs (CPU, minutes)

1. trains a small image/text hub CLIP-style on (image, caption) pairs
   (training/configs/synthetic_hub.yaml);
2. freezes it and binds audio, depth, thermal and IMU spokes to it with (image, X) pairs only
   (training/configs/synthetic_spokes.yaml);
3. stores hub + spokes in one checkpoint (weights in float16 to keep the file small; the
   loader casts them back to float32) and evaluates *that file* on a fresh held-out set:
   emergent zero-shot per modality and retrieval between every pair of modalities.

Writes demo.pt, metrics.json, similarity.png, curves.png and README.md into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python training/make_demo_model.py`: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from imagebind_ros.model import create_model  # noqa: E402
from imagebind_ros.model.checkpoint import read_checkpoint, save_checkpoint  # noqa: E402
from training import train  # noqa: E402
from training.config import load_config  # noqa: E402
from training.data import build_eval_dataset  # noqa: E402
from training.eval import evaluate, templates_from  # noqa: E402
from training.model_io import model_encoders  # noqa: E402
from training.plots import similarity_heatmap  # noqa: E402

CONFIGS = Path(__file__).resolve().parent / "configs"
HUB_CONFIG = CONFIGS / "synthetic_hub.yaml"
SPOKES_CONFIG = CONFIGS / "synthetic_spokes.yaml"
# A held-out set no training run drew from (training uses the train split).
EVAL_SPEC = {"kind": "synthetic", "n": 800, "split": "val", "seed": 7, "image_size": 64}


def run(argv: list[str]) -> None:
    """One training run; a failed run stops the whole recipe."""
    status = train.main(argv)
    if status != 0:
        raise SystemExit(f"training run {argv} stopped with status {status}")


def to_half(path: Path, out: Path, **extra: Any) -> None:
    """Copy a trained checkpoint with float16 weights (half the size; loaded as float32)."""
    ckpt = read_checkpoint(path)
    state = {k: v.half() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    keep = {k: ckpt[k] for k in ("hub", "history", "train_config") if k in ckpt}
    save_checkpoint(out, state, ckpt["config"], **keep, **extra)


def readme(metrics: dict[str, Any], out: Path, cmd: str) -> str:
    """checkpoints/demo/README.md, with the measured numbers filled in."""
    zs = metrics["zero_shot"]
    rows = "\n".join(f"| {m} | {v['top1']:.3f} | {v['chance']:.3f} |" for m, v in zs.items())
    ret = metrics["retrieval"]
    pairs = "\n".join(f"| {p} | {v['R@1']:.3f} | {v['R@5']:.3f} | {v['class@1']:.3f} |"
                      for p, v in ret.items())
    size = (out / "demo.pt").stat().st_size / 2 ** 20
    return f"""# Demo model (SYNTHETIC)

`demo.pt` ({size:.1f} MiB) is a small ImageBind-layout model with all six encoders (vision,
text, audio, depth, thermal, IMU) trained **only on the synthetic world** of
`imagebind_ros/synthetic.py` (8 procedurally generated classes: {", ".join(metrics["classes"])}).
It knows nothing about real sensors: it exists so the nodes, `make demo` and the node tests
have a model whose zero-shot answers are right on synthetic data. Do not use it on a robot.

Load it like any checkpoint: `create_model(checkpoint="checkpoints/demo/demo.pt")`. Its config
(and so its preprocessing: 64x64 images, 64-mel 2-s audio, 5-s IMU windows of 1000 samples)
is inside the file. Weights are stored as float16 and loaded as float32.

## How it was made

    {cmd}

1. a hub (vision + text, width 64, 2 blocks) trained CLIP-style on synthetic (image, caption)
   pairs ({HUB_CONFIG.relative_to(HUB_CONFIG.parents[2])});
2. the hub frozen, audio, depth, thermal and IMU encoders trained with (image, X) pairs only,
   each spoke on its own draw of the world ({SPOKES_CONFIG.relative_to(SPOKES_CONFIG.parents[2])}):
   no spoke ever saw a caption, and no two spokes ever shared a sample;
3. this file (float16 weights) evaluated on {metrics["samples"]} held-out samples.

## Emergent zero-shot (modality -> text prompts, top-1)

| modality | top-1 | chance |
| --- | --- | --- |
{rows}

## Retrieval between modalities

R@k: the same sample among the k nearest (only vision, depth and thermal of one sample share
a scene; audio and IMU share only the class). class@1: the nearest item has the same class.

| query -> gallery | R@1 | R@5 | class@1 |
| --- | --- | --- | --- |
{pairs}

`similarity.png`: mean cosine between each modality's embeddings of a class and each class's
text prompts; `curves.png`: the spokes' training curves; `metrics.json`: all numbers.
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="checkpoints/demo", help="where demo.pt and its report go")
    p.add_argument("--work", default="runs/demo", help="training runs (not committed)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = p.parse_args(argv)
    out, work = Path(args.out), Path(args.work)
    common = ["--log.tensorboard", "false"] + (
        ["--threads", str(args.threads)] if args.threads else [])
    run(["--config", str(HUB_CONFIG), "--out_dir", str(work / "hub"), *common])
    run(["--config", str(SPOKES_CONFIG), "--out_dir", str(work / "spokes"),
         "--hub.path", str(work / "hub" / "model.pt"), *common])
    out.mkdir(parents=True, exist_ok=True)
    to_half(work / "spokes" / "model.pt", out / "demo.pt", synthetic=True)
    model = create_model(checkpoint=out / "demo.pt")
    print(f"demo.pt: modalities {', '.join(model.modalities)}")
    encoders, text_model, transforms = model_encoders(out / "demo.pt", torch.device("cpu"))
    cfg = load_config(str(SPOKES_CONFIG), [], check_data=False)
    evalset = build_eval_dataset(EVAL_SPEC, transforms)
    metrics, sims = evaluate(encoders, text_model, evalset, templates_from(
        cfg["eval"]["templates"]), torch.device("cpu"), ks=(1, 5))
    metrics["classes"] = list(evalset.classnames)
    metrics["eval_set"] = EVAL_SPEC
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    similarity_heatmap(sims, evalset.classnames, out / "similarity.png")
    shutil.copy(work / "spokes" / "curves.png", out / "curves.png")
    cmd = "python training/make_demo_model.py   # = make demo-model"
    (out / "README.md").write_text(readme(metrics, out, cmd))
    for m, v in metrics["zero_shot"].items():
        print(f"zero-shot {m}: top-1 {v['top1']:.3f} (chance {v['chance']:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
