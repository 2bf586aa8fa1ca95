"""Make the committed demo model ``checkpoints/demo/demo.pt`` from the SYNTHETIC world.

    python training/make_demo_model.py            # what `make demo-model` runs (CPU, minutes)

1. trains a small image/text hub CLIP-style on (image, caption) pairs
   (training/configs/synthetic_hub.yaml);
2. freezes it and binds audio, depth, thermal and IMU spokes to it with (image, X) pairs only
   (training/configs/synthetic_spokes.yaml);
3. stores hub + spokes in one checkpoint (weights in float16 to keep the file small; the
   loader casts them back to float32) and evaluates *that file* on a fresh held-out set:
   emergent zero-shot per modality, retrieval between every pair of modalities, and
   zero-shot of the vision encoder on object crops of multi-object scenes (what audio-prompted
   detection embeds).

Writes demo.pt, metrics.json, similarity.png, curves.png and README.md into ``--out``.
About 10 minutes on 2 busy CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python training/make_demo_model.py`: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from imagebind_ros.model import ImageBindModel, create_model  # noqa: E402
from imagebind_ros.model.checkpoint import read_checkpoint, save_checkpoint  # noqa: E402
from imagebind_ros.preprocess import image_to_tensor  # noqa: E402
from imagebind_ros.synthetic import SyntheticWorld  # noqa: E402
from training import train  # noqa: E402
from training.config import load_config  # noqa: E402
from training.data import build_eval_dataset  # noqa: E402
from training.eval import evaluate, templates_from, text_classifier  # noqa: E402
from training.model_io import TextTower, model_encoders  # noqa: E402
from training.plots import similarity_heatmap  # noqa: E402

CONFIGS = Path(__file__).resolve().parent / "configs"
HUB_CONFIG = CONFIGS / "synthetic_hub.yaml"
SPOKES_CONFIG = CONFIGS / "synthetic_spokes.yaml"
# A held-out set no training run drew from (training uses the train split).
EVAL_SPEC = {"kind": "synthetic", "n": 800, "split": "val", "seed": 7, "image_size": 64}
SCENES = {"n": 150, "seed": 11, "size": (480, 640), "objects": (1, 3), "margin": 0.25}


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


@torch.no_grad()
def scene_crop_zero_shot(model: ImageBindModel, templates: list[str]) -> dict[str, float]:
    """Vision zero-shot top-1 on square crops around each object of synthetic scenes (1-3
    objects, 480x640, crop side = longer box side + ``margin``): the crops that audio-prompted
    detection compares with a sound."""
    world = SyntheticWorld(image_size=64)
    clf = text_classifier(TextTower(model), world.classes, templates, torch.device("cpu"))
    vision = model.config.modality("vision")
    xs, ys = [], []
    lo, hi = SCENES["objects"]
    for g in np.random.default_rng(SCENES["seed"]).spawn(SCENES["n"]):
        ids = g.choice(world.num_classes, int(g.integers(lo, hi + 1)), replace=False)
        scene = world.scene([int(c) for c in ids], g, SCENES["size"])
        h, w = scene.image.shape[:2]
        for (x0, y0, x1, y1), c in zip(scene.boxes, scene.class_ids):
            half = max(x1 - x0, y1 - y0) * (1 + SCENES["margin"]) / 2
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            patch = scene.image[max(0, int(cy - half)):min(h, int(cy + half)),
                                max(0, int(cx - half)):min(w, int(cx + half))]
            xs.append(image_to_tensor(np.ascontiguousarray(patch), vision))
            ys.append(int(c))
    emb = model.encode("vision", torch.stack(xs))
    top1 = float(((emb @ clf).argmax(dim=1) == torch.tensor(ys)).float().mean())
    return {"top1": top1, "chance": 1.0 / world.num_classes, "crops": len(ys),
            "scenes": SCENES["n"]}


def preprocessing_summary(config: dict[str, Any]) -> str:
    """One line on the input sizes a node must feed, read from the checkpoint's config."""
    v, a, i = config["vision"], config["audio"], config["imu"]
    return (f"{v['image_size']}x{v['image_size']} images (depth and thermal too), "
            f"{a['num_mel_bins']}-mel audio in {a['clips_per_video']} clip(s) of "
            f"{a['clip_duration']:g} s, {i['window_seconds']:g}-s IMU windows of "
            f"{i['num_samples']} samples")


def readme(metrics: dict[str, Any], out: Path, cmd: str) -> str:
    """checkpoints/demo/README.md, with the measured numbers filled in."""
    zs, sc = metrics["zero_shot"], metrics["scene_crops"]
    rows = "\n".join(f"| {m} | {v['top1']:.3f} | {v['chance']:.3f} |" for m, v in zs.items())
    ret = metrics["retrieval"]
    pairs = "\n".join(f"| {p} | {v['R@1']:.3f} | {v['R@5']:.3f} | {v['class@1']:.3f} |"
                      for p, v in ret.items())
    size = (out / "demo.pt").stat().st_size / 2 ** 20
    hub_cfg, spokes_cfg = (c.relative_to(c.parents[2]) for c in (HUB_CONFIG, SPOKES_CONFIG))
    return f"""# Demo model (SYNTHETIC)

`demo.pt` ({size:.1f} MiB) is a small ImageBind-layout model with all six encoders (vision,
text, audio, depth, thermal, IMU) trained **only on the synthetic world** of
`imagebind_ros/synthetic.py` ({len(metrics["classes"])} procedurally generated classes:
{", ".join(metrics["classes"])}). It knows nothing about real sensors: it exists so the nodes,
`make demo` and the node tests have a model whose zero-shot answers are right on synthetic
data. Do not use it on a robot.

Load it like any checkpoint: `create_model(checkpoint="checkpoints/demo/demo.pt")`. Its config,
and so its preprocessing, is inside the file: {metrics["preprocessing"]}.
Weights are stored as float16 and loaded as float32.

## How it was made

    {cmd}

1. a hub (vision + text, width 64, 2 blocks) trained CLIP-style on synthetic (image, caption)
   pairs, each time a new random crop that keeps the object whole, plus object-free frames
   and crops that cut the object, both captioned as background (the negatives that
   prompted detection needs: docs/detection.md) ({hub_cfg});
2. the hub frozen, audio, depth, thermal and IMU encoders trained with (image, X) pairs only,
   each spoke on its own draw of the world, with aligned crops for depth/thermal and
   frequency masks for audio ({spokes_cfg}): no spoke ever saw a caption, and no two spokes
   ever shared a sample;
3. this file (float16 weights) evaluated on {metrics["samples"]} held-out samples.

The run took {metrics["minutes"]:.1f} minutes on {metrics["threads"]} CPU thread(s); load average
{metrics["load"]:.1f} at the end (other jobs shared the 2 cores).

## Emergent zero-shot (modality -> text prompts, top-1)

| modality | top-1 | chance |
| --- | --- | --- |
{rows}

Object crops of multi-object scenes (`SyntheticWorld.scene`, {sc["scenes"]} scenes, 480x640,
1-3 objects; a square crop 25 % larger than each object's box), vision -> text:
top-1 {sc["top1"]:.3f} on {sc["crops"]} crops (chance {sc["chance"]:.3f}).

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
    # one thread: on a shared 2-core machine two threads stall each other whenever another
    # job holds a core (measured: 7x slower steps), one thread degrades gracefully
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--hub-set", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                   help="override a key of the hub config, e.g. --hub-set dense.weight 1.0")
    args = p.parse_args(argv)
    out, work = Path(args.out), Path(args.work)
    t0 = time.perf_counter()
    torch.set_num_threads(args.threads)
    common = ["--log.tensorboard", "false", "--threads", str(args.threads)]
    hub_sets = [a for key, value in args.hub_set for a in (f"--{key}", value)]
    run(["--config", str(HUB_CONFIG), "--out_dir", str(work / "hub"), *common, *hub_sets])
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
    metrics["scene_crops"] = scene_crop_zero_shot(model, templates_from(
        cfg["eval"]["templates"]))
    metrics["classes"] = list(evalset.classnames)
    metrics["preprocessing"] = preprocessing_summary(model.config.to_dict())
    metrics["eval_set"] = EVAL_SPEC
    metrics["command"] = "python training/make_demo_model.py --out " + str(args.out)
    metrics["minutes"] = (time.perf_counter() - t0) / 60
    metrics["threads"] = args.threads
    metrics["load"] = os.getloadavg()[0]
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    similarity_heatmap(sims, evalset.classnames, out / "similarity.png")
    shutil.copy(work / "spokes" / "curves.png", out / "curves.png")
    cmd = "python training/make_demo_model.py   # = make demo-model"
    (out / "README.md").write_text(readme(metrics, out, cmd))
    for m, v in metrics["zero_shot"].items():
        print(f"zero-shot {m}: top-1 {v['top1']:.3f} (chance {v['chance']:.3f})")
    print(f"scene crops (vision): top-1 {metrics['scene_crops']['top1']:.3f}; "
          f"{metrics['minutes']:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
