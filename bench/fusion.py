"""Sensor fusion under degraded and missing sensors: accuracy on held-out synthetic samples.

    python bench/fusion.py              # tune on one seed, report on another (~5 min, 2 cores)
    python bench/fusion.py calibrate    # only fit checkpoints/demo/fusion_calibration.json

With the demo checkpoint (all six encoders) and its label set and templates
(config/demo.yaml), on samples of the synthetic world that no training run drew from:

1. tune (split ``val``, seed 1401): fit the per-modality calibration (temperature, biases,
   class prototypes, typicality levels) on clean samples; for every degradation of
   ``imagebind_ros.degrade`` pick, from a fine severity grid, the severities at which the
   affected single modality's zero-shot top-1 is nearest 0.7, 0.5 and 0.3; choose the
   typicality quantile and sharpness that maximise the robust method's mean top-1 over
   those degraded conditions; write the calibration file.
2. report (split ``test``, seed 1402): top-1 of every single modality, of the naive mean of
   unit embeddings, of embedding-level, decision-level and robust fusion (ours), clean, with
   each degradation at the chosen severities, and with each sensor missing; for all five
   sensors and for camera + microphone alone. Checks the goals of issue 14.

Writes docs/bench/fusion.json, the plot docs/img/fusion_severity.png and the tables between
the markers in docs/fusion.md (so a retrained demo model needs only this one command).
Embeddings are cached per (seed, degradation, severity) within the run and encoded in
batches.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from tqdm import tqdm  # noqa: E402

from imagebind_ros import preprocess as pp  # noqa: E402
from imagebind_ros.degrade import Degradation, degradations  # noqa: E402
from imagebind_ros.fusion import (SENSORS, Calibration, Fuser, FusionConfig,  # noqa: E402
                                  fit_calibration)
from imagebind_ros.inference.manifest import sha256_file  # noqa: E402
from imagebind_ros.model import ImageBindModel, create_model  # noqa: E402
from imagebind_ros.synthetic import Sample, SyntheticWorld, thermal_to_mono16  # noqa: E402
from imagebind_ros.zeroshot import ZeroShotClassifier  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "checkpoints" / "demo" / "demo.pt"
CALIBRATION = ROOT / "checkpoints" / "demo" / "fusion_calibration.json"
DOC = ROOT / "docs" / "fusion.md"
BEGIN, END = "<!-- bench/fusion.py: begin -->", "<!-- bench/fusion.py: end -->"
TUNE = ("val", 1401)
REPORT = ("test", 1402)
SEVERITY_GRID = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9,
                 0.95, 1.0)
TARGETS = (0.7, 0.5, 0.3)  # affected single modality's top-1 the severities aim at
QUANTILES = (2.0, 5.0, 10.0, 20.0)  # typicality: low = this percentile of clean inputs
SHARPNESS = (1.0, 2.0, 3.0, 5.0)
METHODS = ("mean", "embedding", "decision", "robust")
OURS = "robust"
SETS = {"all five sensors": SENSORS, "camera + microphone": ("vision", "audio")}
RAW = {"vision": "image", "audio": "audio", "depth": "depth_m", "thermal": "thermal",
       "imu": "imu"}


def demo_labels() -> tuple[list[str], list[str]]:
    """The demo's labels and templates (config/demo.yaml, as `make demo` runs them)."""
    params = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    p = params["encoder_node"]["ros__parameters"]
    return list(p["labels"]), list(p["templates"])


@dataclass
class Split:
    """One draw of held-out samples and their embeddings (clean, and per condition)."""

    samples: list[Sample]
    targets: np.ndarray  # (N,) class index
    others: np.ndarray  # (N,) index of a sample of another class (conflict / frozen)
    clean: dict[str, np.ndarray]
    degraded: dict[tuple[str, float], np.ndarray]


class Bench:
    """The demo model, the world and an embedding cache for one run."""

    def __init__(self, checkpoint: Path, threads: int) -> None:
        torch.set_num_threads(threads)
        self.checkpoint = checkpoint
        self.model: ImageBindModel = create_model(checkpoint=checkpoint)
        self.model.eval()
        self.cfg = self.model.config
        self.world = SyntheticWorld(image_size=64)  # as the demo model's own evaluation
        self.labels, templates = demo_labels()
        if tuple(self.labels) != self.world.classes:
            raise SystemExit(f"config/demo.yaml labels {self.labels} are not the synthetic "
                             f"classes {self.world.classes}")
        clf = ZeroShotClassifier(self.embed_texts, 1.0)
        clf.set_labels(self.labels, templates)
        self.text = clf._snapshot()[1]  # (K, D) label embeddings, as the encoder node has
        self.model_id = f"{checkpoint.name}:{self.cfg.name}"  # as the encoder node's
        self.sha256 = sha256_file(checkpoint)
        self.degradations = degradations(self.world.sample_rate)
        self._splits: dict[tuple[str, int, int], Split] = {}

    @torch.inference_mode()
    def embed_texts(self, texts: list[str]) -> np.ndarray:
        return self.model.encode("text", pp.tokenize(texts, self.cfg.text)).numpy()

    def _tensor(self, modality: str, raw: Any, sample: Sample) -> torch.Tensor:
        """What the encoder node feeds the model for this sensor array."""
        cfg = self.cfg.modality(modality)
        if modality == "vision":
            return pp.image_to_tensor(raw, cfg)
        if modality == "audio":
            return pp.audio_to_tensor(raw, self.world.sample_rate, cfg)
        if modality == "depth":
            return pp.depth_to_tensor(raw, cfg, units="m")
        if modality == "thermal":
            return pp.thermal_to_tensor(thermal_to_mono16(raw), cfg)
        return pp.imu_to_tensor(raw, sample.imu_t, cfg)

    @torch.inference_mode()
    def encode(self, modality: str, raws: Sequence[Any],
               samples: Sequence[Sample]) -> np.ndarray:
        """Unit-norm (N, D) embeddings of sensor arrays, encoded in batches of 256."""
        out = []
        for lo in range(0, len(raws), 256):
            x = torch.stack([self._tensor(modality, r, s) for r, s in
                             zip(raws[lo:lo + 256], samples[lo:lo + 256])])
            out.append(self.model.encode(modality, x).numpy())
        return np.concatenate(out)

    def split(self, split: str, seed: int, n: int) -> Split:
        key = (split, seed, n)
        if key not in self._splits:
            samples = self.world.dataset(n, split, seed, SENSORS)
            y = np.array([s.class_id for s in samples])
            others = np.array([next((i + k) % n for k in range(1, n) if y[(i + k) % n] != y[i])
                               for i in range(n)])
            clean = {m: self.encode(m, [getattr(s, RAW[m]) for s in samples], samples)
                     for m in SENSORS}
            self._splits[key] = Split(samples, y, others, clean, {})
        return self._splits[key]

    def degraded(self, sp: Split, seed: int, name: str, severity: float) -> np.ndarray:
        """(N, D) embeddings of the degraded modality (cached per seed/degradation/severity)."""
        key = (name, severity)
        if key not in sp.degraded:
            d: Degradation = self.degradations[name]
            attr = RAW[d.modality]
            raws = []
            for i, s in enumerate(sp.samples):
                g = np.random.default_rng([seed, zlib.crc32(name.encode()),
                                           round(severity * 1000), i])
                other = getattr(sp.samples[sp.others[i]], attr) if d.needs_other else None
                raws.append(d.apply(getattr(s, attr), severity, g, other))
            sp.degraded[key] = self.encode(d.modality, raws, sp.samples)
        return sp.degraded[key]


def top1(text: np.ndarray, emb: np.ndarray, y: np.ndarray) -> float:
    """Zero-shot top-1 of (N, D) embeddings against the label embeddings."""
    return float(((emb @ text.T).argmax(1) == y).mean())


def conditions(sp: Split, bench: Bench, seed: int, severities: dict[str, list[float]],
               sensors: Sequence[str]) -> list[tuple[str, float | None, str | None, dict]]:
    """(name, severity, affected modality, embeddings) of clean, every degradation of a
    modality in ``sensors`` at its severities, and (for 2+ sensors) each one missing."""
    out = [("clean", None, None, {m: sp.clean[m] for m in sensors})]
    for name, sevs in severities.items():
        mod = bench.degradations[name].modality
        if mod not in sensors:
            continue
        for s in sevs:
            emb = {m: sp.clean[m] for m in sensors}
            emb[mod] = bench.degraded(sp, seed, name, s)
            out.append((name, s, mod, emb))
    if len(sensors) > 1:
        for m in sensors:
            out.append((f"{m} missing", None, m, {n: sp.clean[n] for n in sensors if n != m}))
    return out


def evaluate(fusers: dict[str, Fuser], text: np.ndarray, sp: Split,
             conds: list[tuple[str, float | None, str | None, dict]]) -> list[dict[str, Any]]:
    """Top-1 per condition: each present single modality and each fusion method."""
    rows = []
    for name, sev, mod, emb in conds:
        row: dict[str, Any] = {"condition": name, "severity": sev, "modality": mod,
                               "single": {m: top1(text, e, sp.targets) for m, e in emb.items()}}
        row["fused"] = {}
        for method, fuser in fusers.items():
            out = fuser.fuse_batch(emb, method)
            row["fused"][method] = float((out.scores.argmax(1) == sp.targets).mean())
            if method == OURS:
                row["ours_embedding"] = top1(text, out.embeddings, sp.targets)
                row["ours_weight_of_affected"] = (
                    float(out.weights[:, out.modalities.index(mod)].mean())
                    if mod in out.modalities else None)
        rows.append(row)
    return rows


def scales(cal: Calibration, fuser: Fuser, text: np.ndarray, sp: Split) -> dict[str, dict]:
    """Per modality on clean report samples: cosine with the right / wrong labels (mean,
    std), the fitted temperature and typicality levels."""
    out = {}
    for m, e in sp.clean.items():
        cos = e @ text.T
        right = np.take_along_axis(cos, sp.targets[:, None], 1)[:, 0]
        wrong = cos[np.arange(cos.shape[1])[None] != sp.targets[:, None]]
        c = cal.modalities[m]
        out[m] = {"top1": top1(text, e, sp.targets), "right": [float(right.mean()),
                  float(right.std())], "wrong": [float(wrong.mean()), float(wrong.std())],
                  "temperature": c.temperature, "low": c.low, "typical": c.typical,
                  "typicality_clean_median": float(np.median(fuser.typicality(m, e)))}
    return out


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(a random pos > a random neg) (ties count half): the Mann-Whitney AUC."""
    if len(pos) < 5 or len(neg) < 5:
        return float("nan")
    both = np.concatenate([pos, neg])
    order = both.argsort(kind="stable")
    ranks = np.empty(len(both))
    ranks[order] = np.arange(1, len(both) + 1)
    for v in np.unique(both):  # average ranks of ties
        tie = both == v
        ranks[tie] = ranks[tie].mean()
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2)
                 / (len(pos) * len(neg)))


def reliability(bench: Bench, fuser: Fuser, sp: Split, seed: int,
                chosen: dict[str, list[float]]) -> dict[str, list[dict]]:
    """Per degradation and severity: how well typicality tells the degraded inputs that
    the sensor gets wrong from clean inputs (AUC), and their median typicality."""
    out = {}
    for name, sevs in chosen.items():
        m = bench.degradations[name].modality
        clean = fuser.typicality(m, sp.clean[m])
        out[name] = []
        for sev in sevs:
            e = bench.degraded(sp, seed, name, sev)
            wrong = (e @ bench.text.T).argmax(1) != sp.targets
            typ = fuser.typicality(m, e)
            out[name].append({"severity": sev, "auc": auc(clean, typ[wrong]),
                              "typicality_wrong_median": float(np.median(typ[wrong]))
                              if wrong.any() else float("nan")})
    return out


def choose_severities(bench: Bench, sp: Split, seed: int, bar: tqdm) -> dict[str, dict]:
    """Per degradation: single-modality top-1 over the grid, and the chosen severities."""
    out = {}
    for name, d in bench.degradations.items():
        curve = []
        for s in SEVERITY_GRID:
            curve.append(top1(bench.text, bench.degraded(sp, seed, name, s), sp.targets))
            bar.update()
        chosen = sorted({SEVERITY_GRID[int(np.argmin([abs(a - t) for a in curve]))]
                         for t in TARGETS})
        out[name] = {"modality": d.modality, "grid": list(SEVERITY_GRID), "top1": curve,
                     "chosen": chosen}
    return out


def fusers_for(cal: Calibration | None, bench: Bench) -> dict[str, Fuser]:
    return {m: Fuser(FusionConfig(method=m), bench.labels, bench.text, cal) for m in METHODS}


def fit(bench: Bench, sp: Split, quantile: float, sharpness: float, source: str) -> Calibration:
    return fit_calibration(sp.clean, sp.targets, bench.text, bench.labels, quantile=quantile,
                           sharpness=sharpness, model_id=bench.model_id,
                           checkpoint_sha256=bench.sha256, source=source)


def degraded_mean(rows: list[dict[str, Any]], method: str) -> float:
    vals = [r["fused"][method] for r in rows if r["severity"] is not None]
    return float(np.mean(vals)) if vals else float("nan")


def tune(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    """Calibrate, choose severities and the typicality parameters on the tune seed."""
    split, seed = TUNE
    with tqdm(total=len(bench.degradations) * len(SEVERITY_GRID) + 1, desc="tune seed",
              unit="condition") as bar:
        sp = bench.split(split, seed, args.tune_n)
        bar.update()
        sev = choose_severities(bench, sp, seed, bar)
    chosen = {k: v["chosen"] for k, v in sev.items()}
    grid = []
    conds = {s: conditions(sp, bench, seed, chosen, mods) for s, mods in SETS.items()}
    for q in QUANTILES:
        for k in SHARPNESS:
            cal = fit(bench, sp, q, k, "")
            fus = fusers_for(cal, bench)
            score = {m: float(np.mean([degraded_mean(evaluate({m: fus[m]}, bench.text, sp, c), m)
                                       for c in conds.values()])) for m in METHODS[1:]}
            grid.append({"quantile": q, "sharpness": k, "mean_degraded": score})
    best = max(grid, key=lambda g: g["mean_degraded"][OURS])
    source = (f"python bench/fusion.py (tune: split {split}, seed {seed}, {args.tune_n} "
              f"samples; quantile and sharpness chosen over {len(grid)} pairs)")
    cal = fit(bench, sp, best["quantile"], best["sharpness"], source)
    cal.save(args.calibration)
    rivals = {m: max(g["mean_degraded"][m] for g in grid) for m in METHODS[1:]}
    print(f"tune: quantile {best['quantile']:g}, sharpness {best['sharpness']:g}; best mean "
          f"degraded top-1 per method: " + ", ".join(f"{m} {v:.3f}" for m, v in rivals.items()))
    rival = max(rivals, key=rivals.get)
    if rivals[rival] > rivals[OURS] + 0.005:  # beyond what one seed's noise explains
        print(f"NOTE: on the tune seed {rival} beat {OURS} by "
              f"{rivals[rival] - rivals[OURS]:.3f}; consider changing the default method")
    print(f"wrote {args.calibration}")
    return {"split": split, "seed": seed, "n": args.tune_n, "severity_scan": sev,
            "typicality_grid": grid, "quantile": best["quantile"],
            "sharpness": best["sharpness"], "best_per_method": rivals}


def calibrate_only(bench: Bench, args: argparse.Namespace) -> None:
    """Fit the calibration on clean tune samples with the given typicality parameters."""
    split, seed = TUNE
    sp = bench.split(split, seed, args.tune_n)
    source = (f"python bench/fusion.py calibrate (split {split}, seed {seed}, "
              f"{args.tune_n} samples; quantile {args.quantile:g}, sharpness "
              f"{args.sharpness:g} given)")
    fit(bench, sp, args.quantile, args.sharpness, source).save(args.calibration)
    print(f"wrote {args.calibration}")


# ----------------------------------------------------------------------------- reporting


def goals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The goals of issue 14 for one sensor set."""
    clean = rows[0]
    best_clean = max(clean["single"].values())
    hurt = [r for r in rows if r["condition"] != "clean"]
    worst_abs = min(hurt, key=lambda r: r["fused"][OURS])
    gaps = [(r["fused"][OURS] - max(r["single"].values()), r) for r in hurt]
    worst_gap, worst_gap_row = min(gaps, key=lambda g: g[0])
    deg = [r for r in hurt if r["severity"] is not None]
    ours, naive = degraded_mean(rows, OURS), degraded_mean(rows, "mean")

    def cond(r: dict[str, Any]) -> str:
        return r["condition"] + (f" @ {r['severity']:g}" if r["severity"] is not None else "")

    return {
        "clean": {"target": f">= best single {best_clean:.3f}",
                  "reached": clean["fused"][OURS], "met": clean["fused"][OURS] >= best_clean},
        "floor": {"target": ">= 0.95 under every single degraded or missing sensor",
                  "reached": worst_abs["fused"][OURS], "where": cond(worst_abs),
                  "met": worst_abs["fused"][OURS] >= 0.95,
                  "conditions_met": sum(r["fused"][OURS] >= 0.95 for r in hurt),
                  "conditions": len(hurt)},
        "gap": {"target": ">= best remaining single - 0.01 in every such condition",
                "reached": worst_gap, "where": cond(worst_gap_row), "met": worst_gap >= -0.01,
                "conditions_met": sum(g >= -0.01 for g, _ in gaps), "conditions": len(hurt)},
        "over_naive": {"target": ">= naive mean + 0.05, averaged over degraded conditions",
                       "reached": ours - naive, "ours": ours, "naive": naive,
                       "met": ours - naive >= 0.05, "conditions": len(deg)}}


def markdown(report: dict[str, Any]) -> str:
    """The tables docs/fusion.md includes between its markers."""
    lines = [f"#### Scales and calibration (clean report samples, {report['report_n']})", "",
             "| sensor | top-1 alone | cosine, right label | cosine, wrong labels | "
             "temperature | typicality low / typical | median typicality |",
             "|---|---|---|---|---|---|---|"]
    for m, v in report["scales"].items():
        lines.append(f"| {m} | {v['top1']:.3f} | {v['right'][0]:.2f} ± {v['right'][1]:.2f} | "
                     f"{v['wrong'][0]:.2f} ± {v['wrong'][1]:.2f} | {v['temperature']:.1f} | "
                     f"{v['low']:.3f} / {v['typical']:.3f} | "
                     f"{v['typicality_clean_median']:.2f} |")
    lines += ["", "#### Typicality of degraded inputs", "",
              "AUC: how well typicality tells the degraded inputs that the sensor gets wrong",
              "from clean ones (1 = perfectly, 0.5 = not at all), per chosen severity.", "",
              "| degradation | sensor | severities | AUC | median typicality of the wrong "
              "ones | weight of the sensor, ours (5 sensors) |", "|---|---|---|---|---|---|"]
    first = report["rows"][next(iter(SETS))]
    for name, items in report["reliability"].items():
        weights = [r["ours_weight_of_affected"] for r in first if r["condition"] == name]
        lines.append(
            f"| {name} | {next(r['modality'] for r in first if r['condition'] == name)} | "
            + " / ".join(f"{i['severity']:g}" for i in items) + " | "
            + " / ".join(f"{i['auc']:.2f}" for i in items) + " | "
            + " / ".join(f"{i['typicality_wrong_median']:.2f}" for i in items) + " | "
            + " / ".join(f"{w:.2f}" for w in weights) + " |")
    lines.append("")
    for set_name, rows in report["rows"].items():
        mods = list(SETS[set_name])
        lines += [f"#### {set_name} (report seed: split {REPORT[0]}, seed {REPORT[1]}, "
                  f"{report['report_n']} samples)", "",
                  "| condition | severity | " + " | ".join(mods) + " | naive mean | "
                  "embedding | decision | **robust (ours)** |",
                  "|---|---|" + "---|" * (len(mods) + 4)]
        for r in rows:
            cells = []
            for m in mods:
                v = r["single"].get(m)
                cells.append("–" if v is None else
                             (f"*{v:.3f}*" if m == r["modality"] else f"{v:.3f}"))
            best = max(r["fused"][m] for m in METHODS)
            fused = [f"**{r['fused'][m]:.3f}**" if r["fused"][m] == best else
                     f"{r['fused'][m]:.3f}" for m in METHODS]
            sev = "" if r["severity"] is None else f"{r['severity']:g}"
            lines.append(f"| {r['condition']} | {sev} | " + " | ".join(cells + fused) + " |")
        deg = [r for r in rows if r["severity"] is not None]
        lines.append("| **mean over degraded** | | " + " | ".join(
            f"{np.mean([r['single'][m] for r in deg]):.3f}" for m in mods) + " | " + " | ".join(
            f"{degraded_mean(rows, m):.3f}" for m in METHODS) + " |")
        g = report["goals"][set_name]
        lines += ["", f"Goals ({set_name}):", "",
                  "| goal | target | reached | met |", "|---|---|---|---|",
                  f"| clean | {g['clean']['target']} | {g['clean']['reached']:.3f} | "
                  f"{_yes(g['clean']['met'])} |",
                  f"| floor | {g['floor']['target']} | worst {g['floor']['reached']:.3f} "
                  f"({g['floor']['where']}); {g['floor']['conditions_met']}/"
                  f"{g['floor']['conditions']} conditions | {_yes(g['floor']['met'])} |",
                  f"| gap | {g['gap']['target']} | worst {g['gap']['reached']:+.3f} "
                  f"({g['gap']['where']}); {g['gap']['conditions_met']}/"
                  f"{g['gap']['conditions']} conditions | {_yes(g['gap']['met'])} |",
                  f"| over naive | {g['over_naive']['target']} | "
                  f"{g['over_naive']['reached']:+.3f} ({g['over_naive']['ours']:.3f} vs "
                  f"{g['over_naive']['naive']:.3f}) | {_yes(g['over_naive']['met'])} |", ""]
    t = report["tune"]
    lines += textwrap.wrap(
        f"Tuned on split {t['split']}, seed {t['seed']} ({t['n']} samples): typicality "
        f"quantile {t['quantile']:g}, sharpness {t['sharpness']:g}; best mean degraded top-1 "
        "there per method (both sensor sets): "
        + ", ".join(f"{m} {v:.3f}" for m, v in t["best_per_method"].items())
        + f". Command: `{report['command'].strip()}` ({report['minutes']:.1f} min, "
        f"{report['threads']} threads, load {report['load'][0]:.1f} -> "
        f"{report['load'][1]:.1f}).", 99)
    return "\n".join(lines) + "\n"


def _yes(ok: bool) -> str:
    return "yes" if ok else "**no**"


def plot(report: dict[str, Any], path: Path) -> None:
    """Top-1 vs severity per degradation: the affected sensor alone, naive mean, ours."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["severities"])
    cols = 5
    fig, axes = plt.subplots(-(-len(names) // cols), cols, figsize=(3.2 * cols, 9.0),
                             sharey=True, squeeze=False)
    first = report["rows"][next(iter(SETS))]
    for ax, name in zip(axes.flat, names):
        mod = next(r["modality"] for r in first if r["condition"] == name)
        for set_name, style in zip(SETS, ("-", "--")):
            rows = report["rows"][set_name]
            clean = rows[0]
            sub = [r for r in rows if r["condition"] == name]
            if not sub:
                continue
            xs = [0.0] + [r["severity"] for r in sub]
            if style == "-":
                ax.plot(xs, [clean["single"][mod]] + [r["single"][mod] for r in sub], "o-",
                        color="0.55", lw=1.5, label="the degraded sensor alone")
            tag = "5 sensors" if style == "-" else "camera+mic"
            ax.plot(xs, [clean["fused"]["mean"]] + [r["fused"]["mean"] for r in sub],
                    style, color="tab:orange", marker=".", label=f"naive mean, {tag}")
            ax.plot(xs, [clean["fused"][OURS]] + [r["fused"][OURS] for r in sub],
                    style, color="tab:blue", marker=".", lw=2, label=f"ours, {tag}")
        ax.set_title(f"{name} ({mod})", fontsize=10)
        ax.set_ylim(0, 1.02)
        ax.axhline(0.95, color="0.8", lw=0.8, zorder=0)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("top-1")
    for ax in axes[-1]:
        ax.set_xlabel("severity")
    handles, labels = [], []
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.suptitle("Zero-shot top-1 under one degraded sensor (demo model, held-out synthetic "
                 "samples; grey line = 0.95)", fontsize=11)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9,
               frameon=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def update_doc(doc: Path, table: str) -> None:
    """Replace the text between the markers of docs/fusion.md (if it has them)."""
    if not doc.exists():
        return
    text = doc.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        print(f"{doc} has no {BEGIN} ... {END} markers: tables not copied")
        return
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    doc.write_text(f"{head}{BEGIN}\n{table}{END}{tail}", encoding="utf-8")
    print(f"updated {doc}")


def run(bench: Bench, args: argparse.Namespace) -> None:
    t0, load0 = time.perf_counter(), os.getloadavg()[0]
    tuned = tune(bench, args)
    cal = Calibration.load(args.calibration)
    fus = fusers_for(cal, bench)
    chosen = {k: v["chosen"] for k, v in tuned["severity_scan"].items()}
    split, seed = REPORT
    n_jobs = sum(len(v) for v in chosen.values()) + 1
    with tqdm(total=n_jobs, desc="report seed", unit="condition") as bar:
        sp = bench.split(split, seed, args.n)
        bar.update()
        for name, sevs in chosen.items():
            for s in sevs:
                bench.degraded(sp, seed, name, s)
                bar.update()
    rows = {s: evaluate(fus, bench.text, sp, conditions(sp, bench, seed, chosen, mods))
            for s, mods in SETS.items()}
    scale = scales(cal, fus[OURS], bench.text, sp)
    rel = reliability(bench, fus[OURS], sp, seed, chosen)
    report = {"command": "python bench/fusion.py " + " ".join(sys.argv[1:]),
              "checkpoint": str(args.checkpoint), "model_id": bench.model_id,
              "labels": bench.labels, "report_split": split, "report_seed": seed,
              "report_n": args.n, "severities": chosen, "tune": tuned,
              "minutes": (time.perf_counter() - t0) / 60, "load": [load0, os.getloadavg()[0]],
              "threads": torch.get_num_threads(), "scales": scale, "reliability": rel,
              "rows": rows,
              "goals": {s: goals(r) for s, r in rows.items()}}
    table = markdown(report)
    print(table)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    plot(report, Path(args.plot))
    print(f"wrote {args.json}, {args.plot}")
    if args.doc:
        update_doc(Path(args.doc), table)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", nargs="?", default="run", choices=("run", "calibrate"),
                   help="run: tune + report (default); calibrate: only fit the calibration")
    p.add_argument("--checkpoint", type=Path, default=DEMO)
    p.add_argument("--n", type=int, default=800, help="report-seed samples")
    p.add_argument("--tune-n", type=int, default=400, help="tune-seed samples")
    p.add_argument("--calibration", type=Path, default=CALIBRATION)
    p.add_argument("--quantile", type=float, default=5.0, help="calibrate: typicality quantile")
    p.add_argument("--sharpness", type=float, default=3.0, help="calibrate: typicality slope")
    p.add_argument("--json", default=str(ROOT / "docs" / "bench" / "fusion.json"))
    p.add_argument("--plot", default=str(ROOT / "docs" / "img" / "fusion_severity.png"))
    p.add_argument("--doc", default=str(DOC), help="markdown file whose marked section is "
                   "replaced by the tables ('' = none)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = p.parse_args(argv)
    bench = Bench(args.checkpoint, args.threads)
    calibrate_only(bench, args) if args.command == "calibrate" else run(bench, args)


if __name__ == "__main__":
    main()
