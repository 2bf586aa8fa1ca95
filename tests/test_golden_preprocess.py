"""Our preprocessing of the golden files against the reference ImageBind's tensors.

../shared/golden/imagebind_small/inputs.pt holds what the reference data.py produced from
files/ (two PNGs, a 16 kHz mono and a 44.1 kHz stereo WAV) and three texts, one longer than
the context. Tolerance: 1e-4 max abs difference; token ids exactly.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from imagebind_ros import preprocess as P
from imagebind_ros.model import get_config

GOLDEN = Path(__file__).resolve().parents[1].parent / "shared" / "golden" / "imagebind_small"
pytestmark = pytest.mark.skipif(not (GOLDEN / "inputs.pt").is_file(),
                                reason=f"golden reference inputs not found at {GOLDEN}")
CFG = get_config("imagebind_small")


@pytest.fixture(scope="module")
def golden() -> dict:
    return torch.load(GOLDEN / "inputs.pt", weights_only=True)


def test_images_match_reference(golden: dict) -> None:
    images = [P.load_image(GOLDEN / p) for p in golden["files"]["vision"]]
    ours = P.images_to_tensor(images, CFG.vision)
    ref = golden["inputs"]["vision"]
    assert ours.shape == ref.shape and ours.dtype == ref.dtype
    assert (ours - ref).abs().max().item() <= 1e-4


def test_audio_matches_reference(golden: dict) -> None:
    ours = torch.stack([P.audio_to_tensor(*P.load_audio(GOLDEN / p), CFG.audio)
                        for p in golden["files"]["audio"]])
    ref = golden["inputs"]["audio"]
    assert ours.shape == ref.shape and ours.dtype == ref.dtype
    assert (ours - ref).abs().max().item() <= 1e-4


def test_text_tokens_match_reference(golden: dict) -> None:
    texts = golden["files"]["text"]
    assert any(len(t.split()) > CFG.text.context_length for t in texts)  # truncation covered
    ours = P.tokenize(texts, CFG.text)
    assert torch.equal(ours, golden["inputs"]["text"])


def test_dispatch_matches_reference(golden: dict) -> None:
    """The to_tensor path the nodes use gives the same tensors (first sample of each)."""
    files = golden["files"]
    wav, sr = P.load_audio(GOLDEN / files["audio"][1])
    audio = P.to_tensor("audio", wav, CFG.audio, sample_rate=sr)
    assert (audio - golden["inputs"]["audio"][1:2]).abs().max().item() <= 1e-4
    image = P.to_tensor("vision", P.load_image(GOLDEN / files["vision"][0]), CFG.vision)
    assert (image - golden["inputs"]["vision"][:1]).abs().max().item() <= 1e-4
