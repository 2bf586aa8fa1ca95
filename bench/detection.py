"""Prompted detection: accuracy on held-out synthetic scenes, and speed per frame.

    python bench/detection.py accuracy [--scenes 50]   # demo checkpoint, audio + text prompts
    python bench/detection.py speed                    # regions/s, latency per 640x480 frame
    python bench/detection.py tradeoff                 # hit rate vs latency, docs plot
    python bench/detection.py backends                 # dense read-out: torch vs onnxruntime
    python bench/detection.py patches                  # patch top-1 inside objects

``accuracy``: ``SyntheticWorld.scene`` frames (640x480, 3 objects of different classes at
known boxes, a random stream no training run drew from); every object in turn is prompted
by a fresh 2-s sound of its class and by the caption "a photo of a <class>"; a trial is a
hit when the top detection has IoU >= 0.5 with that object's box. Several scoring variants
share each frame's window embeddings. Writes docs/bench/detection_accuracy.json and the
annotated example docs/img/detection_example.png.

``speed``: the detector's whole per-frame cost (window cut-out + embedding + scoring one
prompt) for the demo checkpoint, the tiny preset and imagebind_huge (seeded random weights:
speed does not depend on them), against the same model's embedding of the whole frame
measured in the same run (what the encoder node pays per image).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from imagebind_ros import preprocess as pp  # noqa: E402
from imagebind_ros.detection import (DetectorConfig, Prompt, RegionDetector,  # noqa: E402
                                     Trial, dense_tensor, draw_detections,
                                     evaluate_synthetic, heatmap, pyramid)
from common import single_encoder_model, time_calls  # noqa: E402  (bench/common.py)
from imagebind_ros.model import ImageBindModel, create_model  # noqa: E402
from imagebind_ros.model.dense import DENSE_VARIANTS, DenseVisionEncoder  # noqa: E402
from imagebind_ros.synthetic import BACKGROUND_CAPTIONS, SyntheticWorld  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "checkpoints" / "demo" / "demo.pt"
VARIANTS = {
    "map + background subtraction + GrabCut (default)": DetectorConfig(),
    "map + GrabCut, no background subtraction": DetectorConfig(background=0.0),
    "map + background subtraction, no GrabCut": DetectorConfig(refine_iterations=0),
    "map only": DetectorConfig(background=0.0, refine_iterations=0),
    "best window (windows + NMS)": DetectorConfig(localize="windows"),
}


def dense_encoder(model: ImageBindModel, variant: str):  # noqa: ANN201 - a small closure
    enc = DenseVisionEncoder(model, variant)

    @torch.inference_mode()
    def run(x: np.ndarray) -> np.ndarray:
        return enc(torch.as_tensor(x)).numpy()
    return run


def encoder(model: ImageBindModel, modality: str):  # noqa: ANN201 - a small closure
    @torch.inference_mode()
    def run(x: np.ndarray | torch.Tensor) -> np.ndarray:
        return model.encode(modality, torch.as_tensor(np.asarray(x))).numpy()
    return run


def rates(trials: list[Trial], key: str) -> dict[str, dict[str, float]]:
    """hit rate per (variant, modality) and per (variant, modality, key value)."""
    groups: dict[tuple, list[bool]] = defaultdict(list)
    for t in trials:
        groups[(t.variant, t.modality, "all")].append(t.hit)
        groups[(t.variant, t.modality, getattr(t, key))].append(t.hit)
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for (variant, modality, k), hits in groups.items():
        out[f"{variant} | {modality}"][k] = float(np.mean(hits))
    return out


def accuracy(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    model = create_model(checkpoint=args.checkpoint)
    cfg = model.config
    world = SyntheticWorld()
    audio, text, vision = (encoder(model, m) for m in ("audio", "text", "vision"))
    makers = {
        "audio": lambda c, g: audio(pp.audio_to_tensor(world.audio(c, g), world.sample_rate,
                                                       cfg.audio)[None])[0],
        "text": lambda c, g: text(pp.tokenize([f"a photo of a {world.classes[c]}"],
                                              cfg.text))[0]}
    det = RegionDetector(vision, cfg.vision, DetectorConfig())
    load0, t0 = os.getloadavg()[0], time.perf_counter()
    with tqdm(total=args.scenes, desc="scenes", unit="scene") as bar:
        trials = evaluate_synthetic(det, world, makers, args.scenes, seed=args.seed,
                                    variants=VARIANTS, progress=bar.update)
    minutes = (time.perf_counter() - t0) / 60
    by_class = rates(trials, "class_name")
    print(f"{args.scenes} scenes x 3 objects, {minutes:.1f} min, load {load0:.1f} -> "
          f"{os.getloadavg()[0]:.1f}")
    print("| scoring | audio prompts | text prompts |\n|---|---|---|")
    for v in VARIANTS:
        print(f"| {v} | {by_class[f'{v} | audio']['all']:.2f} | "
              f"{by_class[f'{v} | text']['all']:.2f} |")
    default = next(iter(VARIANTS))
    print("\n| class | " + " | ".join(world.classes) + " |\n|---|" + "---|" * world.num_classes)
    for m in ("audio", "text"):
        row = by_class[f"{default} | {m}"]
        print(f"| {m} | " + " | ".join(f"{row.get(c, float('nan')):.2f}"
                                       for c in world.classes) + " |")
    scenes_hit = defaultdict(list)
    for t in trials:
        if t.variant == default:
            scenes_hit[(t.modality, t.scene)].append(t.hit)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({
        "command": "python bench/detection.py " + " ".join(sys.argv[1:]),
        "checkpoint": str(args.checkpoint), "scenes": args.scenes, "seed": args.seed,
        "objects": 3, "minutes": minutes, "load": [load0, os.getloadavg()[0]],
        "hit_rate": by_class,
        "object_free_windows_nearest": background_classes(model, world, args.seed),
        "trials": [t.__dict__ for t in trials]}, indent=1))
    example(model, world, args.seed, args.image)


def prompt_makers(model: ImageBindModel, world: SyntheticWorld) -> dict:
    cfg = model.config
    audio, text = encoder(model, "audio"), encoder(model, "text")
    return {
        "audio": lambda c, g: audio(pp.audio_to_tensor(world.audio(c, g), world.sample_rate,
                                                       cfg.audio)[None])[0],
        "text": lambda c, g: text(pp.tokenize([f"a photo of a {world.classes[c]}"],
                                              cfg.text))[0]}


def dense(args: argparse.Namespace) -> None:
    """The dense method: every (last-block variant, input size) with a few scoring settings
    on the tuning stream (seed ``--tune-seed``), then the best one on the held-out stream."""
    torch.set_num_threads(args.threads)
    model = create_model(checkpoint=args.checkpoint)
    world = SyntheticWorld()
    makers = prompt_makers(model, world)
    vision = encoder(model, "vision")
    scoring = {f"thr {t} bg {b:g} grabcut {r}": DetectorConfig(
        method="dense", map_threshold=t, background=b, refine_iterations=r)
        for t in args.thresholds for b in (0.0, 1.0) for r in (0, 4)}
    tuned: dict[str, float] = {}
    t0 = time.perf_counter()
    print(f"tuning on seed {args.tune_seed}, {args.tune_scenes} scenes")
    for variant in args.variants:
        enc = dense_encoder(model, variant)
        for size in args.sizes:
            variants = {k: replace(c, dense_sizes=(size,)) for k, c in scoring.items()}
            det = RegionDetector(vision, model.config.vision, next(iter(variants.values())),
                                 enc)
            trials = evaluate_synthetic(det, world, makers, args.tune_scenes,
                                        seed=args.tune_seed, variants=variants)
            r = rates(trials, "class_name")
            for k in variants:
                mean = (r[f"{k} | audio"]["all"] + r[f"{k} | text"]["all"]) / 2
                tuned[f"{variant} | {size} | {k}"] = mean
            best = max(variants, key=lambda k: tuned[f"{variant} | {size} | {k}"])
            print(f"  {variant:9s} {size:4d}px  best {best}: "
                  f"{tuned[f'{variant} | {size} | {best}']:.2f}", flush=True)
    best = max(tuned, key=tuned.get)
    variant, size, key = best.split(" | ")
    cfg = replace(scoring[key], dense_sizes=(int(size),))
    print(f"chosen: {best} ({tuned[best]:.2f} on the tuning stream), "
          f"{(time.perf_counter() - t0) / 60:.1f} min")
    det = RegionDetector(vision, model.config.vision, cfg, dense_encoder(model, variant))
    trials = evaluate_synthetic(det, world, makers, args.scenes, seed=args.seed)
    r = rates(trials, "class_name")
    print(f"held-out seed {args.seed}, {args.scenes} scenes: audio {r[' | audio']['all']:.2f}"
          f", text {r[' | text']['all']:.2f}")
    print("| prompt | " + " | ".join(world.classes) + " |\n|---|" + "---|" * world.num_classes)
    for m in ("audio", "text"):
        print(f"| {m} | " + " | ".join(f"{r[f' | {m}'].get(c, float('nan')):.2f}"
                                       for c in world.classes) + " |")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({
        "command": "python bench/detection.py " + " ".join(sys.argv[1:]),
        "tuning": {"seed": args.tune_seed, "scenes": args.tune_scenes, "mean_hit": tuned},
        "chosen": {"variant": variant, "dense_size": int(size), "scoring": key},
        "held_out": {"seed": args.seed, "scenes": args.scenes, "hit_rate": r},
        "trials": [t.__dict__ for t in trials]}, indent=1))
    dense_example(model, world, args.seed, det, args.image)


def dense_example(model: ImageBindModel, world: SyntheticWorld, seed: int,
                  det: RegionDetector, out: str) -> None:
    """The held-out stream's first scene: the heat map of each object's sound beside the
    frame with the dense detections (true boxes thin white)."""
    cfg = model.config
    g = np.random.default_rng([world.seed, 0xDE7EC7, seed]).spawn(1)[0]
    ids = [int(c) for c in g.choice(world.num_classes, 3, replace=False)]
    scene = world.scene(ids, g)
    audio = encoder(model, "audio")
    prompts = [Prompt(f"sound of {world.classes[c]}", "audio", audio(pp.audio_to_tensor(
        world.audio(c, g), world.sample_rate, cfg.audio)[None])[0]) for c in ids]
    regions = det.regions(scene.image)
    img = scene.image.copy()
    for x0, y0, x1, y1 in scene.boxes:
        cv2.rectangle(img, (int(x0), int(y0)), (int(x1) - 1, int(y1) - 1), (255, 255, 255), 1)
    tiles = [draw_detections(img, det.detect_all(regions, prompts))]
    for p in prompts:
        tile = heatmap(scene.image, det.similarity(regions, p.vector))
        cv2.putText(tile, p.label, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2,
                    cv2.LINE_AA)
        tiles.append(tile)
    grid = np.concatenate([np.concatenate(tiles[:2], 1), np.concatenate(tiles[2:], 1)], 0)
    grid = cv2.resize(grid, (grid.shape[1] // 2, grid.shape[0] // 2),
                      interpolation=cv2.INTER_AREA)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(out, cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    print(f"wrote {out} (classes {', '.join(world.classes[c] for c in ids)})")


def background_classes(model: ImageBindModel, world: SyntheticWorld, seed: int,
                       scenes: int = 10) -> dict[str, float]:
    """Which caption the windows that touch NO object are closest to, among the class
    captions and a background caption (the mean of ``BACKGROUND_CAPTIONS``): a class that
    wins on plain background cannot be told from it by any scoring of windows."""
    cfg = model.config
    text = encoder(model, "text")
    captions = text(pp.tokenize([f"a photo of a {c}" for c in world.classes], cfg.text))
    bg = text(pp.tokenize(list(BACKGROUND_CAPTIONS), cfg.text)).mean(0)
    captions = np.concatenate([captions, bg[None] / np.linalg.norm(bg)])
    names = (*world.classes, "background")
    det = RegionDetector(encoder(model, "vision"), cfg.vision, DetectorConfig())
    counts = np.zeros(len(names))
    for g in np.random.default_rng([world.seed, 0xDE7EC7, seed]).spawn(scenes):
        ids = [int(c) for c in g.choice(world.num_classes, 3, replace=False)]
        scene = world.scene(ids, g)
        regions = det.regions(scene.image)
        b, t = regions.boxes, scene.boxes
        touch = ((np.minimum(b[:, None, 2], t[None, :, 2]) > np.maximum(b[:, None, 0],
                                                                        t[None, :, 0]))
                 & (np.minimum(b[:, None, 3], t[None, :, 3]) > np.maximum(b[:, None, 1],
                                                                          t[None, :, 1])))
        free = regions.embeddings[~touch.any(1)]
        counts += np.bincount((free @ captions.T).argmax(1), minlength=len(names))
    share = counts / counts.sum()
    print(f"object-free windows ({int(counts.sum())} in {scenes} scenes), nearest caption: "
          + ", ".join(f"{c} {s:.2f}" for c, s in zip(names, share)))
    return {c: float(s) for c, s in zip(names, share)}


def example(model: ImageBindModel, world: SyntheticWorld, seed: int, out: str) -> None:
    """The benchmark's first scene with the same sounds as its trials: every object
    prompted by a sound of its class, detections drawn, the true boxes in thin white."""
    cfg = model.config
    g = np.random.default_rng([world.seed, 0xDE7EC7, seed]).spawn(1)[0]  # as the benchmark
    ids = [int(c) for c in g.choice(world.num_classes, 3, replace=False)]
    scene = world.scene(ids, g)
    det = RegionDetector(encoder(model, "vision"), cfg.vision, DetectorConfig())
    regions = det.regions(scene.image)
    audio = encoder(model, "audio")
    # the same draws from g as evaluate_synthetic (captions draw nothing)
    prompts = [Prompt(f"sound of {world.classes[c]}", "audio", audio(pp.audio_to_tensor(
        world.audio(c, g), world.sample_rate, cfg.audio)[None])[0]) for c in ids]
    img = scene.image.copy()
    for x0, y0, x1, y1 in scene.boxes:
        cv2.rectangle(img, (int(x0), int(y0)), (int(x1) - 1, int(y1) - 1), (255, 255, 255), 1)
    drawn = draw_detections(img, det.detect_all(regions, prompts))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(out, cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
    print(f"wrote {out} (classes {', '.join(world.classes[c] for c in ids)})")


def tradeoff(args: argparse.Namespace) -> None:
    """Hit rate against per-frame latency for one checkpoint: every dense (variant, size)
    with the scoring the ``dense`` run's tuning stream preferred for it, held out on
    ``--seed``, and the window method's default (hit rate from the ``accuracy`` JSON);
    latency = the detector's whole frame (one prompt), measured here in the same run."""
    torch.set_num_threads(args.threads)
    model = create_model(checkpoint=args.checkpoint)
    world = SyntheticWorld()
    makers = prompt_makers(model, world)
    vision = encoder(model, "vision")
    tuned = json.loads(Path(args.dense_json).read_text())["tuning"]["mean_hit"]
    windows = json.loads(Path(args.windows_json).read_text())["hit_rate"]
    frame = world.scene([0, 1, 2], np.random.default_rng(0)).image  # 640x480
    prompt = Prompt("x", "text", makers["text"](0, np.random.default_rng(0)))
    default = next(iter(VARIANTS))
    det = RegionDetector(vision, model.config.vision, DetectorConfig())
    t = time_calls(lambda: det(frame, [prompt]), batch=1, repeats=args.repeats)
    rows = [{"label": args.label, "method": "windows", "latency_s": t.p50,
             "audio": windows[f"{default} | audio"]["all"],
             "text": windows[f"{default} | text"]["all"]}]
    for key in sorted({k.rsplit(" | ", 1)[0] for k in tuned}):
        best = max((k for k in tuned if k.startswith(key + " | ")), key=tuned.get)
        variant, size, scoring = best.split(" | ")
        thr, bg, grab = (float(v) for v in scoring.replace("thr ", "").replace(
            " bg ", " ").replace(" grabcut ", " ").split())
        cfg = DetectorConfig(method="dense", dense_sizes=(int(size),), map_threshold=thr,
                             background=bg, refine_iterations=int(grab))
        det = RegionDetector(vision, model.config.vision, cfg, dense_encoder(model, variant))
        r = rates(evaluate_synthetic(det, world, makers, args.scenes, seed=args.seed),
                  "class_name")
        t = time_calls(lambda: det(frame, [prompt]), batch=1, repeats=args.repeats)
        rows.append({"label": args.label, "method": f"dense {variant} {size}px",
                     "scoring": scoring,
                     "latency_s": t.p50, "audio": r[" | audio"]["all"],
                     "text": r[" | text"]["all"]})
        print(rows[-1], flush=True)
    print(f"held-out seed {args.seed}, {args.scenes} scenes; threads {args.threads}, load "
          f"{os.getloadavg()[0]:.1f}\n| method | scoring (tuned) | frame latency ms | audio | "
          "text |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r.get('scoring', 'default')} | {r['latency_s'] * 1e3:.0f} | "
              f"{r['audio']:.2f} | {r['text']:.2f} |")
    Path(args.json).write_text(json.dumps({
        "command": "python bench/detection.py " + " ".join(sys.argv[1:]),
        "checkpoint": args.checkpoint, "seed": args.seed, "scenes": args.scenes,
        "rows": rows}, indent=1))
    for other in args.also:  # earlier runs (another checkpoint) on the same plot
        rows = json.loads(Path(other).read_text())["rows"] + rows
    plot_tradeoff(rows, args.plot)


def plot_tradeoff(rows: list[dict], out: str) -> None:
    """Hit rate vs latency; colour = model (``label``), marker = method or dense variant,
    dense points annotated with their input size."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.0, 4.4))
    labels = list(dict.fromkeys(r.get("label", "") for r in rows))
    markers = {"windows": "s", "maskclip": "o", "naclip": "^"}
    seen = set()
    for r in rows:
        hit, ms = (r["audio"] + r["text"]) / 2, r["latency_s"] * 1e3
        kind = r["method"].split()[1] if r["method"].startswith("dense") else "windows"
        name = f"{r.get('label', '')}: {'dense ' if kind != 'windows' else ''}{kind}"
        ax.scatter(ms, hit, marker=markers.get(kind, "x"), s=50,
                   color=f"C{labels.index(r.get('label', ''))}",
                   label=None if name in seen else name)
        seen.add(name)
        if kind != "windows":
            ax.annotate(r["method"].split()[2], (ms, hit), fontsize=7, xytext=(4, -3),
                        textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("per-frame latency, ms (640x480, one prompt, 1 thread; log scale)")
    ax.set_ylabel("held-out hit rate (mean of sounds, captions)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center right")
    ax.set_title("prompted detection on the demo model: dense (size = input short side) "
                 "vs windows", fontsize=9)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")


def patches(args: argparse.Namespace) -> None:
    """Patch-level alignment of the dense read-out: on two-object scenes of a stream no run
    tunes on, the share of patches inside an object's box whose nearest class caption is
    that object's class (8 classes: chance 0.125)."""
    torch.set_num_threads(args.threads)
    world = SyntheticWorld()
    for ckpt in args.checkpoints:
        model = create_model(checkpoint=ckpt)
        text = encoder(model, "text")(pp.tokenize(
            [f"a photo of a {c}" for c in world.classes], model.config.text))
        for variant in args.variants:
            run = dense_encoder(model, variant)
            for size in args.sizes:
                ok = n = 0
                for g in np.random.default_rng([world.seed, 0xDA7C, args.seed]).spawn(
                        args.scenes):
                    scene = world.scene([int(c) for c in g.choice(world.num_classes, 2,
                                                                 replace=False)], g)
                    x, _ = dense_tensor(scene.image, size, model.config.vision)
                    pred = (run(x)[0] @ text.T).argmax(-1)
                    gh, gw = pred.shape
                    h, w = scene.image.shape[:2]
                    cy, cx = (np.arange(gh) + 0.5) * h / gh, (np.arange(gw) + 0.5) * w / gw
                    for (x0, y0, x1, y1), c in zip(scene.boxes, scene.class_ids):
                        inside = ((cy[:, None] >= y0) & (cy[:, None] < y1)
                                  & (cx[None] >= x0) & (cx[None] < x1))
                        ok += int((pred[inside] == c).sum())
                        n += int(inside.sum())
                print(f"| {Path(ckpt).parent.name}/{Path(ckpt).name} | {variant} | {size} px | "
                      f"{ok / n:.2f} | {n} |", flush=True)


def backends(args: argparse.Namespace) -> None:
    """The dense read-out alone (one 640x480 frame's forward) on the torch backend and on
    ONNX Runtime over a fresh ``export --dense`` of the same checkpoint, in the same run."""
    import tempfile

    from imagebind_ros.inference.export import export_onnx
    from imagebind_ros.inference.onnxruntime_backend import OnnxRuntimeBackend
    from imagebind_ros.inference.torch_backend import TorchBackend

    torch.set_num_threads(args.threads)
    model = create_model(checkpoint=args.checkpoint)
    frame = SyntheticWorld().scene([0, 1, 2], np.random.default_rng(0)).image  # 640x480
    with tempfile.TemporaryDirectory() as out:
        export_onnx(model, ["vision"], out, progress=False, dense=[args.variant])
        runs = {"torch": TorchBackend(model, modalities=["vision"]),
                "onnxruntime": OnnxRuntimeBackend(out, threads=args.threads)}
        print(f"threads={args.threads} load={os.getloadavg()[0]:.1f} variant={args.variant}\n"
              "| short side | patches | torch ms | onnxruntime ms | ort / torch |\n"
              "|---|---|---|---|---|")
        for size in args.sizes:
            x, _ = dense_tensor(frame, size, model.config.vision)
            t = {k: time_calls(lambda b=b: b.encode_dense(x, args.variant), batch=1,
                               repeats=args.repeats).p50 for k, b in runs.items()}
            n = x.shape[2] * x.shape[3] // model.config.vision.kernel_size[1] ** 2
            print(f"| {size} px | {n} | {t['torch'] * 1e3:.2f} | {t['onnxruntime'] * 1e3:.2f} "
                  f"| {t['onnxruntime'] / t['torch']:.2f} |", flush=True)


def num(x: float) -> str:
    """Three significant digits, never in exponent form."""
    return f"{x:.0f}" if x >= 100 else f"{x:.3g}"


def speed(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    frame = SyntheticWorld().scene([0, 1, 2], np.random.default_rng(0)).image  # 640x480
    print(f"threads={torch.get_num_threads()} load={os.getloadavg()[0]:.1f}")
    print("| model | input | windows/frame | batch | frame latency s | regions/s | "
          "whole-frame embedding ms | frame / whole-frame |\n|---|---|---|---|---|---|---|---|")
    setups = [("demo checkpoint", lambda: create_model(checkpoint=DEMO), 4096, 64),
              ("tiny", lambda: single_encoder_model("tiny", "vision"), 4096, 64),
              ("imagebind_huge", lambda: single_encoder_model("imagebind_huge", "vision"),
               args.huge_regions, 8)]
    dense_sizes = {"demo checkpoint": args.demo_sizes, "tiny": [224],
                   "imagebind_huge": args.huge_sizes}
    for name, build, max_regions, batch in setups:
        model = build()
        vcfg = model.config.vision
        enc = encoder(model, "vision")
        cfg = replace(DetectorConfig(), max_regions=max_regions, batch_size=batch)
        det = RegionDetector(enc, vcfg, cfg)
        n = sum(len(lv.origins) for lv in pyramid(frame.shape[:2], vcfg.image_size, cfg))
        prompt = Prompt("x", "text", np.ones(model.config.out_embed_dim, np.float32))
        whole = pp.image_to_tensor(frame, vcfg)[None].numpy()
        base = time_calls(lambda: enc(whole), batch=1, repeats=args.repeats)
        t = time_calls(lambda: det(frame, [prompt]), batch=n,
                       repeats=1 if name == "imagebind_huge" else args.repeats, warmup=0)
        print(f"| {name} | windows, {vcfg.image_size}px | {n} | {batch} | {t.p50:.2f} | "
              f"{num(n / t.p50)} | {num(base.p50 * 1e3)} | {t.p50 / base.p50:.0f}x |",
              flush=True)
        for size in dense_sizes[name]:
            dcfg = replace(DetectorConfig(), method="dense", dense_sizes=(size,))
            ddet = RegionDetector(enc, vcfg, dcfg, dense_encoder(model, args.variant))
            n = len(ddet.regions(frame).boxes)
            t = time_calls(lambda: ddet(frame, [prompt]), batch=n, repeats=args.repeats)
            print(f"| {name} | dense {args.variant}, {size}px short side | {n} patches | 1 | "
                  f"{t.p50:.3f} | {num(n / t.p50)} | {num(base.p50 * 1e3)} | "
                  f"{t.p50 / base.p50:.2f}x |", flush=True)
        del model, det
    print(f"load after={os.getloadavg()[0]:.1f}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("accuracy", help="hit rate on held-out synthetic scenes")
    a.add_argument("--checkpoint", default=str(DEMO))
    a.add_argument("--scenes", type=int, default=50)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--json", default=str(ROOT / "docs" / "bench" / "detection_accuracy.json"))
    a.add_argument("--image", default=str(ROOT / "docs" / "img" / "detection_example.png"))
    d = sub.add_parser("dense", help="dense method: tune on one stream, test on another")
    d.add_argument("--checkpoint", default=str(DEMO))
    d.add_argument("--scenes", type=int, default=50)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--tune-scenes", type=int, default=20)
    d.add_argument("--tune-seed", type=int, default=1)
    d.add_argument("--variants", nargs="+", default=list(DENSE_VARIANTS),
                   choices=DENSE_VARIANTS)
    d.add_argument("--sizes", nargs="+", type=int, default=[64, 128, 192])
    d.add_argument("--thresholds", nargs="+", type=float, default=[0.4, 0.5])
    d.add_argument("--json", default=str(ROOT / "docs" / "bench" / "detection_dense.json"))
    d.add_argument("--image", default=str(ROOT / "docs" / "img" / "detection_dense.png"))
    s = sub.add_parser("speed", help="latency per frame and regions/s")
    s.add_argument("--repeats", type=int, default=3)
    s.add_argument("--huge-regions", type=int, default=64,
                   help="max_regions for imagebind_huge (a CPU frame takes minutes beyond)")
    s.add_argument("--variant", default="maskclip", choices=DENSE_VARIANTS)
    s.add_argument("--demo-sizes", nargs="+", type=int, default=[64, 128])
    s.add_argument("--huge-sizes", nargs="+", type=int, default=[224])
    t = sub.add_parser("tradeoff", help="hit rate vs frame latency, dense and windows")
    t.add_argument("--checkpoint", default=str(DEMO))
    t.add_argument("--scenes", type=int, default=50)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--repeats", type=int, default=5)
    t.add_argument("--dense-json", default=str(ROOT / "docs" / "bench" /
                                               "detection_dense.json"))
    t.add_argument("--windows-json", default=str(ROOT / "docs" / "bench" /
                                                 "detection_accuracy.json"))
    t.add_argument("--json", default=str(ROOT / "docs" / "bench" / "detection_tradeoff.json"))
    t.add_argument("--plot", default=str(ROOT / "docs" / "img" / "detection_tradeoff.png"))
    t.add_argument("--label", default="demo model", help="this checkpoint in the plot")
    t.add_argument("--also", nargs="*", default=[], help="tradeoff JSONs of other runs to "
                   "plot alongside")
    b = sub.add_parser("backends", help="dense read-out latency: torch vs ONNX Runtime")
    b.add_argument("--checkpoint", default=str(DEMO))
    b.add_argument("--variant", default="maskclip", choices=DENSE_VARIANTS)
    b.add_argument("--sizes", nargs="+", type=int, default=[64, 128, 192])
    b.add_argument("--repeats", type=int, default=20)
    c = sub.add_parser("patches", help="patch top-1 of the dense read-out inside objects")
    c.add_argument("--checkpoints", nargs="+", default=[str(DEMO)])
    c.add_argument("--variants", nargs="+", default=["plain", "maskclip", "naclip"],
                   choices=DENSE_VARIANTS)
    c.add_argument("--sizes", nargs="+", type=int, default=[64, 128])
    c.add_argument("--scenes", type=int, default=15)
    c.add_argument("--seed", type=int, default=0)
    for q in (a, d, s, t, b, c):
        q.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = p.parse_args(argv)
    {"accuracy": accuracy, "dense": dense, "speed": speed, "tradeoff": tradeoff,
     "backends": backends, "patches": patches}[args.command](args)


if __name__ == "__main__":
    main()
