"""Our preprocessing of the golden files against the reference ImageBind's tensors.

../shared/golden/imagebind_small/inputs.pt holds what the reference data.py produced from
files/ (two PNGs, a 16 kHz mono and a 44.1 kHz stereo WAV) and three texts, one longer than
the context. Tolerance: 1e-4 max abs difference; token ids exactly.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from imagebind_ros import modalities
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


def test_registry_path_matches_reference(golden: dict) -> None:
    """The registry path every caller takes (file -> raw input -> batch: the CLI, the
    embedder, the datasets, and the encoder node's decoded message -> batch) gives the
    reference tensors."""
    files, inputs = golden["files"], golden["inputs"]
    for m in ("vision", "audio"):
        raws = [modalities.load_file(m, GOLDEN / p) for p in files[m]]
        ours = modalities.to_batch(m, raws, CFG)
        assert ours.shape == inputs[m].shape and ours.dtype == inputs[m].dtype
        assert (ours - inputs[m]).abs().max().item() <= 1e-4, m
    assert torch.equal(modalities.to_batch("text", files["text"], CFG), inputs["text"])
    assert torch.equal(torch.stack([modalities.to_tensor("text", t, CFG) for t in files["text"]]),
                       inputs["text"])
