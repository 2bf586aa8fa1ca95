"""PNG figures written next to the checkpoint: training curves and similarity heat-maps."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: robots and CI have no display
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

# one colour per modality in every panel and figure
COLOURS = {"vision": "tab:blue", "text": "tab:gray", "audio": "tab:orange",
           "depth": "tab:green", "thermal": "tab:red", "imu": "tab:purple"}


def training_curves(history: Sequence[dict[str, Any]], path: str | os.PathLike[str]) -> None:
    """Loss per modality and emergent zero-shot top-1 / retrieval R@1 per epoch."""
    epochs = [h["epoch"] for h in history]
    fig, (ax_l, ax_z) = plt.subplots(1, 2, figsize=(11, 4))
    for m in history[0]["loss"] if history else []:
        ax_l.plot(epochs, [h["loss"][m] for h in history], marker="o", label=m,
                  color=COLOURS.get(m))
    ax_l.set(xlabel="epoch", ylabel="InfoNCE loss", title="training loss")
    evals = [(h["epoch"], h["eval"]) for h in history if h.get("eval")]
    for m in evals[0][1].get("zero_shot", {}) if evals else []:
        ax_z.plot([e for e, _ in evals], [v["zero_shot"][m]["top1"] for _, v in evals],
                  marker="o", label=f"{m} zero-shot top-1", color=COLOURS.get(m))
    if evals and "zero_shot" in evals[0][1]:
        chance = next(iter(evals[0][1]["zero_shot"].values()))["chance"]
        ax_z.axhline(chance, color="grey", linestyle=":", label="chance")
    if evals and evals[0][1].get("retrieval"):
        r1 = [sum(p["R@1"] for p in v["retrieval"].values()) / len(v["retrieval"])
              for _, v in evals]
        ax_z.plot([e for e, _ in evals], r1, "k--", marker="s", label="mean retrieval R@1")
    ax_z.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1.02), title="held-out evaluation")
    for ax in (ax_l, ax_z):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def similarity_heatmap(sims: dict[str, torch.Tensor], classnames: Sequence[str],
                       path: str | os.PathLike[str]) -> None:
    """One (class x prompt) mean-cosine matrix per modality: a bright diagonal = aligned."""
    mods = list(sims)
    fig, axes = plt.subplots(1, len(mods), figsize=(3.6 * len(mods), 3.8), squeeze=False)
    short = [c if len(c) <= 12 else c[:11] + "." for c in classnames]
    for ax, m in zip(axes[0], mods):
        im = ax.imshow(sims[m].numpy(), cmap="viridis")
        ax.set_title(f"{m} vs text prompts", fontsize=9)
        ax.set_xticks(range(len(short)), short, rotation=90, fontsize=6)
        ax.set_yticks(range(len(short)), short, fontsize=6)
        ax.set_xlabel("prompt class", fontsize=8)
        ax.set_ylabel(f"{m} sample class", fontsize=8)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
