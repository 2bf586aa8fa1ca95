"""Our preprocessing of the golden files against the reference ImageBind's tensors.

tests/data/golden/imagebind_small/inputs.pt (see its README.md) holds what the reference
data.py produced from files/ (two PNGs, a 16 kHz mono and a 44.1 kHz stereo WAV) and three
texts, one longer than the context. Tolerance: 1e-4 max abs difference; token ids exactly.
The pure functions are checked, then the registry path every caller takes, then the path
of a sensor message: decoded (``imagebind_ros.decode``, as the encoder node does) and
prepared by the registry.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from golden import GOLDEN, golden
from imagebind_ros import decode, modalities
from imagebind_ros import preprocess as P
from imagebind_ros.model import get_config

CFG = get_config("imagebind_small")


@pytest.fixture(scope="module")
def ref() -> dict:
    return torch.load(golden("inputs.pt"), weights_only=True)


def files(ref: dict, modality: str) -> list:
    return [golden(p) for p in ref["files"][modality]]


def test_images_match_reference(ref: dict) -> None:
    images = [P.load_image(p) for p in files(ref, "vision")]
    ours = P.images_to_tensor(images, CFG.vision)
    want = ref["inputs"]["vision"]
    assert ours.shape == want.shape and ours.dtype == want.dtype
    assert (ours - want).abs().max().item() <= 1e-4


def test_audio_matches_reference(ref: dict) -> None:
    ours = torch.stack([P.audio_to_tensor(*P.load_audio(p), CFG.audio)
                        for p in files(ref, "audio")])
    want = ref["inputs"]["audio"]
    assert ours.shape == want.shape and ours.dtype == want.dtype
    assert (ours - want).abs().max().item() <= 1e-4


def test_text_tokens_match_reference(ref: dict) -> None:
    texts = ref["files"]["text"]
    assert any(len(t.split()) > CFG.text.context_length for t in texts)  # truncation covered
    assert torch.equal(P.tokenize(texts, CFG.text), ref["inputs"]["text"])


def test_registry_path_matches_reference(ref: dict) -> None:
    """The registry path the CLI, the embedder and the datasets take (file -> raw input ->
    batch) gives the reference tensors."""
    inputs = ref["inputs"]
    for m in ("vision", "audio"):
        raws = [modalities.load_file(m, p) for p in files(ref, m)]
        ours = modalities.to_batch(m, raws, CFG)
        assert ours.shape == inputs[m].shape and ours.dtype == inputs[m].dtype
        assert (ours - inputs[m]).abs().max().item() <= 1e-4, m
    texts = ref["files"]["text"]
    assert torch.equal(modalities.to_batch("text", texts, CFG), inputs["text"])
    assert torch.equal(torch.stack([modalities.to_tensor("text", t, CFG) for t in texts]),
                       inputs["text"])


def image_message(rgb: np.ndarray, encoding: str) -> SimpleNamespace:
    """A sensor_msgs/Image as a camera driver fills it (rows padded to a 64-byte step)."""
    wire = rgb[:, :, ::-1] if encoding == "bgr8" else rgb
    h, w, _ = wire.shape
    step = -(-w * 3 // 64) * 64
    rows = np.zeros((h, step), np.uint8)
    rows[:, :w * 3] = wire.reshape(h, w * 3)
    return SimpleNamespace(encoding=encoding, height=h, width=w, step=step, is_bigendian=0,
                           data=rows.tobytes())


def test_the_encoder_nodes_message_path_matches_reference(ref: dict) -> None:
    """What the encoder node does with a message: decode it once, picture -> raw input ->
    batch through the registry (for audio: a decoded chunk holding the whole recording)."""
    vision = modalities.spec("vision")
    for i, path in enumerate(files(ref, "vision")):
        rgb = P.load_image(path)
        for encoding in ("rgb8", "bgr8"):
            picture = decode.decode_picture(image_message(rgb, encoding))
            x = vision.to_batch([vision.picture_to_raw(picture)], CFG)
            assert (x - ref["inputs"]["vision"][i:i + 1]).abs().max().item() <= 1e-4
    for i, path in enumerate(files(ref, "audio")):
        wave, rate = P.load_audio(path)
        chunk = SimpleNamespace(sample_format="F32LE", sample_rate=rate,
                                channels=wave.shape[1], data=wave.astype("<f4").tobytes())
        sound = decode.decode_audio_chunk(chunk)
        x = modalities.to_batch("audio", [sound], CFG)
        assert (x - ref["inputs"]["audio"][i:i + 1]).abs().max().item() <= 1e-4


def test_golden_data_are_inside_the_repository() -> None:
    root = GOLDEN.parents[3]
    assert (root / "pyproject.toml").is_file() and GOLDEN.is_relative_to(root)
    assert (GOLDEN / "README.md").is_file()
