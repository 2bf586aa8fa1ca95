"""The paper's central claim, end to end on the synthetic world (about a minute on 2 cores).

1. train a small image/text hub CLIP-style on (image, caption) pairs;
2. freeze it and train an audio encoder on (image, audio) pairs only;
3. on held-out samples, audio -> text zero-shot works although no audio was ever paired
   with text: the alignment emerges through the shared image space.
"""

from __future__ import annotations

import json
from pathlib import Path

from imagebind_ros.model import create_model
from training.config import load_config
from training.data import Transforms, build_pair_dataset
from training.hub import load_hub
from training.model_io import build_config
from training.train import main

CONFIGS = Path(__file__).resolve().parents[1] / "training" / "configs"
# One thread: two threads stall each other whenever another job holds one of the 2 cores.
FAST = ["--batch_size", "32", "--optim.lr", "3e-3", "--optim.warmup_steps", "10",
        "--eval.every", "0", "--eval.plots", "false", "--data.eval.n", "200",
        "--log.progress", "false", "--log.tensorboard", "false", "--threads", "1"]
# no augmentation (and so no partial-crop negatives): a minute-long run learns faster from
# plain pairs (the demo model uses both)
PLAIN = ["--views", "1", "--crop", "null", "--freq_mask", "0", "--parts", "0"]


def _plain(modality: str) -> list[str]:
    return [f"--data.train.{modality}.{k[2:]}" if k.startswith("--") else k for k in PLAIN]


def test_emergent_audio_to_text_zero_shot(tmp_path: Path) -> None:
    hub_dir, spoke_dir = tmp_path / "hub", tmp_path / "audio"
    assert main(["--config", str(CONFIGS / "synthetic_hub.yaml"), "--out_dir", str(hub_dir),
                 "--data.train.text.n", "1024", "--epochs", "10", *FAST,
                 *_plain("text")]) == 0
    spokes = ["--config", str(CONFIGS / "synthetic_spokes.yaml"), "--modalities", "audio",
              "--hub.path", str(hub_dir / "model.pt"), "--out_dir", str(spoke_dir),
              "--data.train.audio.n", "1024", "--epochs", "5", *FAST, *_plain("audio")]
    assert main(spokes) == 0

    # what the audio encoder was trained on: (image, audio) pairs, never a caption
    cfg = load_config(spokes[1], spokes[2:])
    assert cfg["modalities"] == ["audio"]  # the only data set the trainer builds
    hub = load_hub(cfg["hub"])
    tf = Transforms(build_config(cfg, hub.out_dim), hub.image_transform)
    pairs = build_pair_dataset({**cfg["data"]["train"]["audio"], "n": 4}, "audio", tf)
    assert set(pairs.load(0, 0)) == {"vision", "audio"}
    assert cfg["data"]["eval"]["split"] == "test"  # held out: an independent random stream

    final = json.loads((spoke_dir / "metrics.json").read_text())["epochs"][-1]["eval"]
    zs = final["zero_shot"]["audio"]
    assert zs["chance"] == 1 / 8
    assert zs["top1"] >= 3 * zs["chance"], final["zero_shot"]
    # the deployable file holds the hub too: one create_model call gives audio and text
    model = create_model(checkpoint=spoke_dir / "model.pt")
    assert {"vision", "text", "audio"} <= set(model.modalities)
