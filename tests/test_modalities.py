"""The modality registry: one spec per modality, wired to the right preprocessing, shapes the
model really takes, files and bytes read alike, pictures both ways, clear batch errors.

References are independent of the registry: the preprocess function called by hand with
the arguments the docs give, the model's own forward (which refuses wrong shapes), files
written with PIL / soundfile / numpy.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from PIL import Image

from imagebind_ros import MODALITIES, modalities
from imagebind_ros import preprocess as P
from imagebind_ros.decode import DecodeError, DepthImage, Picture, Sound
from imagebind_ros.modalities import ImuSamples
from imagebind_ros.model import MODALITY_CONFIGS, create_model, get_config

CFG = get_config("tiny")
RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (30, 40, 3), dtype=np.uint8)
WAVE = (0.3 * np.sin(np.arange(12000) * 0.05)).astype(np.float32)[:, None]
MM = RNG.integers(300, 9000, (30, 40)).astype(np.uint16)
COUNTS = RNG.integers(0, 65535, (30, 40)).astype(np.uint16)
MOTION = RNG.standard_normal((300, 6))
TIMES = np.sort(RNG.uniform(0, 3, 300))

# modality -> (raw input, the preprocess call the registry must make for it)
CASES = {
    "vision": (RGB, lambda: P.image_to_tensor(RGB, CFG.vision)),
    "text": ("a dog barks", lambda: P.tokenize(["a dog barks"], CFG.text)[0]),
    "audio": (Sound(WAVE, 8000), lambda: P.audio_to_tensor(WAVE, 8000, CFG.audio)),
    "depth": (DepthImage(MM, "mm"), lambda: P.depth_to_tensor(MM, CFG.depth, "mm")),
    "thermal": (COUNTS, lambda: P.thermal_to_tensor(COUNTS, CFG.thermal)),
    "imu": (ImuSamples(MOTION, TIMES), lambda: P.imu_to_tensor(MOTION, TIMES, CFG.imu)),
}
# what a batch row is where it differs from to_tensor: a 1.5-s sound is one clip
BATCH_ROW = {"audio": lambda: P.audio_window_to_tensor(WAVE, 8000, CFG.audio)}


def test_one_spec_per_modality_of_the_package_and_the_model() -> None:
    assert tuple(modalities.SPECS) == MODALITIES == tuple(MODALITY_CONFIGS) == tuple(CASES)
    with pytest.raises(KeyError, match="unknown modality 'smell'; known: vision"):
        modalities.spec("smell")
    assert modalities.image_modalities() == ("vision", "depth", "thermal")


@pytest.mark.parametrize("modality", MODALITIES)
def test_raw_input_becomes_what_preprocess_gives(modality: str) -> None:
    raw, reference = CASES[modality]
    want = reference()
    got = modalities.to_tensor(modality, raw, CFG)
    assert got.dtype == want.dtype and torch.equal(got, want)
    row = BATCH_ROW.get(modality, reference)()
    batch = modalities.to_batch(modality, [raw, raw], CFG)
    assert batch.shape == (2, *row.shape) and torch.equal(batch[1], row)
    assert tuple(want.shape) == modalities.sample_shape(CFG, modality)
    assert np.dtype(modalities.input_dtype(modality)) == np.dtype(str(want.dtype)[6:])


def test_sample_shapes_and_examples_are_what_the_model_takes() -> None:
    torch.manual_seed(0)
    model = create_model("tiny")
    for m in MODALITIES:
        x = modalities.example_input(CFG, m, 3, torch.Generator().manual_seed(1))
        assert tuple(x.shape) == (3, *modalities.sample_shape(CFG, m))
        with torch.no_grad():
            assert model.encode(m, x).shape == (3, CFG.out_embed_dim)
            # one axis off is refused by the model itself: the registry's shape is THE shape
            wrong = x[..., :-16] if m != "text" else x
            if m != "text":
                with pytest.raises((ValueError, RuntimeError)):
                    model.encode(m, wrong)
    tokens = modalities.example_input(CFG, "text", 4, torch.Generator().manual_seed(2))
    assert ((tokens == CFG.text.vocab_size - 1).sum(1) == 1).all()  # one end-of-text per row


def test_files_and_their_bytes_read_the_same(tmp_path: Path) -> None:
    Image.fromarray(RGB).save(tmp_path / "a.png")
    soundfile.write(tmp_path / "a.wav", WAVE, 8000, subtype="FLOAT")
    Image.fromarray(MM).save(tmp_path / "d.png")
    np.save(tmp_path / "d.npy", MM.astype(np.float32) / 1000)
    Image.fromarray(COUNTS).save(tmp_path / "t.png")
    np.savetxt(tmp_path / "i.csv", np.column_stack([TIMES, MOTION]), delimiter=",",
               header="t,ax,ay,az,gx,gy,gz", comments="")
    want = {
        ("vision", "a.png"): RGB,
        ("audio", "a.wav"): Sound(WAVE, 8000),
        ("depth", "d.png"): DepthImage(MM, "mm"),
        ("depth", "d.npy"): DepthImage(MM.astype(np.float32) / 1000, "m"),
        ("thermal", "t.png"): COUNTS,
        ("imu", "i.csv"): ImuSamples(MOTION, TIMES),
    }
    for (m, name), ref in want.items():
        from_file = modalities.load_file(m, tmp_path / name)
        from_bytes = modalities.decode_bytes(m, f"key.{name}", (tmp_path / name).read_bytes())
        for got in (from_file, from_bytes):
            assert type(got) is type(ref), (m, name)
            for field in ("array", "samples", "sample_rate", "times"):
                if hasattr(ref, field):
                    np.testing.assert_allclose(getattr(got, field), getattr(ref, field),
                                               rtol=1e-6, err_msg=f"{m} {name} {field}")
            assert getattr(got, "units", None) == getattr(ref, "units", None)
            if isinstance(ref, np.ndarray):
                assert got.dtype == ref.dtype and np.array_equal(got, ref)
    with pytest.raises(FileNotFoundError, match="depth file not found: .*nope.png"):
        modalities.load_file("depth", tmp_path / "nope.png")
    with pytest.raises(ValueError, match="16-bit"):
        buf = io.BytesIO()
        Image.fromarray(RGB[:, :, 0]).save(buf, format="PNG")
        modalities.decode_bytes("depth", "x.depth.png", buf.getvalue())
    with pytest.raises(ValueError, match="not read from files"):
        modalities.load_file("text", tmp_path / "a.png")


def test_pictures_to_raw_inputs_and_back() -> None:
    mono = RGB[:, :, 1]
    cases = [("vision", Picture(RGB, "rgb8", "bgr8"), RGB),
             ("vision", Picture(mono, "mono8", "mono8"), np.repeat(mono[:, :, None], 3, 2)),
             ("depth", Picture(MM, "16UC1", "16UC1"), DepthImage(MM, "mm")),
             ("thermal", Picture(COUNTS, "mono16", "mono16"), COUNTS)]
    for m, pic, want in cases:
        raw = modalities.spec(m).picture_to_raw(pic)
        arr = raw.array if isinstance(raw, DepthImage) else raw
        np.testing.assert_array_equal(arr, want.array if isinstance(want, DepthImage) else want)
        back = modalities.spec(m).raw_to_picture(raw)
        assert back.encoding == ("rgb8" if m == "vision" else pic.encoding)
    metres = modalities.spec("depth").raw_to_picture(DepthImage(MM / 1000.0, "m"))
    assert metres.encoding == "32FC1" and metres.array.dtype == np.float32
    with pytest.raises(DecodeError, match="cannot be a camera image"):
        modalities.spec("vision").picture_to_raw(Picture(MM, "16UC1", "16UC1"))
    with pytest.raises(DecodeError, match="does not come from images"):
        modalities.spec("audio").picture_to_raw(Picture(RGB, "rgb8", "rgb8"))
    with pytest.raises(ValueError, match="outside 0..65535"):
        modalities.spec("depth").raw_to_picture(DepthImage(np.full((2, 2), 70000), "mm"))
    valid = modalities.spec("depth").valid_fraction
    assert valid is not None
    assert valid(DepthImage(np.array([[0.0, np.nan], [1.0, 2.0]]), "m")) == 0.5


@pytest.mark.parametrize(("modality", "batch", "error", "match"), [
    ("vision", np.zeros((2, 3, 8, 8), np.float32), ValueError, r"\(B, 3, 224, 224\)"),
    ("depth", np.full((1, 1, 224, 224), np.nan, np.float32), ValueError, "NaN"),
    ("imu", np.zeros((1, 6, 2000), bool).astype(object), TypeError, "numeric"),
    ("text", np.zeros((1, 77), np.float32), TypeError, "integer token ids"),
    ("text", np.full((1, 77), 10 ** 6), ValueError, "must lie in"),
])
def test_batch_validation_names_the_problem(modality: str, batch: np.ndarray,
                                            error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        modalities.spec(modality).validate(batch, CFG)


def test_validation_adds_the_batch_axis_and_casts() -> None:
    one = modalities.spec("imu").validate(torch.zeros(6, 2000, dtype=torch.float64), CFG)
    assert one.shape == (1, 6, 2000) and one.dtype == np.float32 and one.flags.c_contiguous
    ids = modalities.spec("text").validate(np.ones((2, 77), np.int32), CFG)
    assert ids.dtype == np.int64


def test_audio_batches_take_one_clip_for_sounds_no_longer_than_a_clip() -> None:
    """Live windows (<= clip_duration) are one clip, longer recordings the reference's
    clips; a short sound batched with a long one repeats its clip (the reference's three
    clips of a short sound hold the same samples)."""
    sr, cfg = 16000, CFG.audio
    t = np.arange(int(3.5 * sr)) / sr
    long = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    window = long[:2 * sr]  # exactly clip_duration
    one = modalities.to_batch("audio", [Sound(window, sr)], CFG)
    reference = P.audio_to_tensor(window, sr, cfg)  # three clips of the same 2 s
    assert one.shape == (1, 1, *reference.shape[1:])
    torch.testing.assert_close(one[0, 0], reference[0], rtol=0, atol=0)  # first clip: exact
    torch.testing.assert_close(one[0, 0], reference[2], rtol=0, atol=1e-5)
    both = modalities.to_batch("audio", [Sound(window, sr), Sound(long, sr)], CFG)
    assert both.shape == (2, 3, *reference.shape[1:])
    assert torch.equal(both[1], P.audio_to_tensor(long, sr, cfg))
    assert all(torch.equal(both[0, i], one[0, 0]) for i in range(3))
    # 1 .. clips_per_video clips pass validation; 0 or 4 clips do not
    spec = modalities.spec("audio")
    assert spec.validate(one, CFG).shape == one.shape
    for clips in (0, 4):
        with pytest.raises(ValueError, match=r"audio input must be \(B, 1\.\.3, 1, 128, 204\)"):
            spec.validate(np.zeros((1, clips, 1, 128, 204), np.float32), CFG)
