"""Draw docs/img/synthetic_montage.png: one row per SYNTHETIC class with its image (and box),
depth, thermal, audio spectrogram and IMU trace, so the world can be checked by eye.

Usage: python scripts/plot_synthetic.py [--out docs/img/synthetic_montage.png] [--seed 0]
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from PIL import Image  # noqa: E402

from imagebind_ros.synthetic import SyntheticWorld  # noqa: E402


def spectrogram_db(audio: np.ndarray, sr: int, freqs: np.ndarray, n_fft: int = 1024,
                   hop: int = 128) -> np.ndarray:
    """(len(freqs), time) log power of a Hann-windowed STFT, read at log-spaced `freqs` so
    that the low engine/car harmonics are as visible as the chirps."""
    frames = np.lib.stride_tricks.sliding_window_view(audio, n_fft)[::hop] * np.hanning(n_fft)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    bins = np.rint(freqs * n_fft / sr).astype(int)
    return 10 * np.log10(power[:, bins].T + 1e-10)


def montage(world: SyntheticWorld, seed: int) -> plt.Figure:
    names = world.classes
    fig, axes = plt.subplots(len(names), 5, figsize=(12, 2.1 * len(names)),
                             gridspec_kw={"width_ratios": [1, 1, 1, 1.6, 1.6]})
    titles = ("image + box", "depth (m)", "thermal (°C)", "audio spectrogram (log Hz)",
              "IMU accel - mean (m/s²), 2 s")
    for col, title in enumerate(titles):
        axes[0, col].set_title(title, fontsize=9)
    for row, name in enumerate(names):
        s = world.sample(row, np.random.default_rng([seed, row]))
        ax = axes[row]
        ax[0].imshow(s.image)
        x0, y0, x1, y1 = s.box
        ax[0].add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="magenta", lw=1))
        ax[0].set_ylabel(name, fontsize=11)
        im = ax[1].imshow(s.depth_m, cmap="viridis", vmin=0, vmax=12)
        fig.colorbar(im, ax=ax[1], fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
        im = ax[2].imshow(s.thermal, cmap="inferno", vmin=0, vmax=max(60.0, s.thermal.max()))
        fig.colorbar(im, ax=ax[2], fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
        freqs = np.geomspace(30, world.sample_rate / 2, 128)
        ax[3].imshow(spectrogram_db(s.audio, world.sample_rate, freqs), origin="lower",
                     aspect="auto", cmap="magma", vmin=-80,
                     extent=(0, world.audio_seconds, 0, len(freqs)))
        ticks = [100, 1000, 8000]
        ax[3].set_yticks(np.interp(np.log(ticks), np.log(freqs), np.arange(len(freqs))),
                         ["100 Hz", "1 kHz", "8 kHz"])
        ax[3].set_xlabel("s", fontsize=7)
        n = int(2 * world.imu_rate)
        acc = s.imu[:n, :3] - s.imu[:n, :3].mean(0)
        for k, colour in enumerate(("tab:red", "tab:green", "tab:blue")):
            ax[4].plot(s.imu_t[:n], acc[:, k], colour, lw=0.5)
        ax[4].text(0.01, 0.97, s.caption, transform=ax[4].transAxes, fontsize=7, va="top")
        for a in ax[:3]:
            a.set_xticks([])
            a.set_yticks([])
        for a in ax[3:]:
            a.tick_params(labelsize=6)
    fig.suptitle("SYNTHETIC multi-sensor world (procedural; not real data)", fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/img/synthetic_montage.png"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    fig = montage(SyntheticWorld(), args.seed)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=72)
    # A 256-colour palette keeps the noisy images well under the 300 KB budget.
    img = Image.open(buf).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    img.save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
