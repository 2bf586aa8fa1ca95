"""File playback (the sim-sensors node's ``source: files``) against hand-built expectations:
images as read, scenes by segment, looped sounds and IMU, resampling by its physics (a
sine keeps its frequency, a line stays a line), bad files named in one error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
from PIL import Image

from imagebind_ros.playback import FilePlayback, PlaybackError, expand


def write_png(path: Path, arr: np.ndarray) -> Path:
    Image.fromarray(arr).save(path)
    return path


@pytest.fixture
def scene_files(tmp_path: Path) -> dict[str, list[Path]]:
    rng = np.random.default_rng(0)
    files: dict[str, list[Path]] = {"vision": [], "depth": [], "thermal": []}
    for i in range(3):
        files["vision"].append(write_png(tmp_path / f"rgb_{i}.png",
                                         rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)))
    files["depth"].append(write_png(tmp_path / "d0.png",
                                    rng.integers(300, 5000, (12, 16), dtype=np.uint16)))
    np.save(tmp_path / "d1.npy", rng.uniform(0.3, 5.0, (12, 16)))  # float = metres
    files["depth"].append(tmp_path / "d1.npy")
    files["thermal"].append(write_png(tmp_path / "t0.png",
                                      rng.integers(0, 256, (12, 16), dtype=np.uint8)))
    return files


def test_images_play_as_read_one_scene_per_segment(scene_files: dict[str, list[Path]]
                                                   ) -> None:
    pb = FilePlayback({m: [str(p) for p in ps] for m, ps in scene_files.items()},
                      switch_seconds=2.0)
    assert pb.modalities == ("vision", "depth", "thermal")
    rgb = [np.array(Image.open(p).convert("RGB")) for p in scene_files["vision"]]
    for t, k in ((0.0, 0), (1.99, 0), (2.0, 1), (5.9, 2), (6.0, 0), (13.0, 0)):
        assert np.array_equal(pb.picture("vision", t).array, rgb[k % 3]), t
    d0 = pb.picture("depth", 0.5)
    assert d0.encoding == "16UC1" and d0.array.dtype == np.uint16
    assert np.array_equal(d0.array, np.array(Image.open(scene_files["depth"][0])))
    d1 = pb.picture("depth", 2.5)  # the second depth file (lists cycle independently)
    assert d1.encoding == "32FC1" and d1.array.dtype == np.float32
    assert np.allclose(d1.array, np.load(scene_files["depth"][1]))
    assert pb.picture("depth", 4.5).encoding == "16UC1"
    assert pb.picture("thermal", 9.0).encoding == "mono8"


def test_integer_npy_depth_is_millimetres(tmp_path: Path) -> None:
    """REP 118 by dtype: an integer .npy holds millimetres (16UC1), never metres."""
    mm = np.array([[0, 450, 12000], [65535, 1, 3000]], np.int64)
    np.save(tmp_path / "mm.npy", mm)
    pic = FilePlayback({"depth": [str(tmp_path / "mm.npy")]}).picture("depth", 0.0)
    assert pic.encoding == "16UC1" and pic.array.dtype == np.uint16
    assert np.array_equal(pic.array, mm)
    np.save(tmp_path / "far.npy", mm + 1)
    with pytest.raises(PlaybackError, match="outside 0..65535"):
        FilePlayback({"depth": [str(tmp_path / "far.npy")]})


def test_directories_and_globs_expand_in_sorted_order(scene_files: dict[str, list[Path]]
                                                      ) -> None:
    folder = scene_files["vision"][0].parent
    assert expand([str(folder)], "vision") == sorted(folder.glob("*.png"))
    assert expand([str(folder / "rgb_*.png")], "vision") == scene_files["vision"]
    assert expand([str(folder)], "depth") == sorted([*folder.glob("*.png"),
                                                     folder / "d1.npy"])
    with pytest.raises(PlaybackError, match="no .wav"):
        expand([str(folder / "nothing_here")], "audio")


def test_sounds_are_mono_resampled_and_looped_per_segment(tmp_path: Path) -> None:
    rate_in, freq = 44100, 440.0
    t = np.arange(int(0.5 * rate_in)) / rate_in
    left, right = 0.6 * np.sin(2 * np.pi * freq * t), 0.2 * np.sin(2 * np.pi * freq * t)
    soundfile.write(tmp_path / "a.wav", np.stack([left, right], 1), rate_in)
    second = np.linspace(-0.5, 0.5, 1000, dtype=np.float32)  # 16 kHz: no resampling
    soundfile.write(tmp_path / "b.wav", second, 16000, subtype="FLOAT")
    pb = FilePlayback({"audio": [str(tmp_path / "a.wav"), str(tmp_path / "b.wav")]},
                      switch_seconds=1.0, sample_rate=16000)
    a = pb.sounds[0]
    assert len(a) == 8000  # 0.5 s at 16 kHz
    spectrum = np.abs(np.fft.rfft(a * np.hanning(len(a))))
    assert abs(np.argmax(spectrum) * 16000 / len(a) - freq) <= 2.0  # the tone survives
    assert abs(np.abs(a[1000:-1000]).max() - 0.4) < 0.01  # mean of the channels
    # segment 0 loops a (0.5 s) twice, segment 1 loops b (1000 samples) 16 times, then a
    stream = pb.audio(0, 48000)
    want = np.concatenate([np.tile(a, 2), np.tile(second, 16), np.tile(a, 2)])
    assert np.array_equal(stream, want)
    assert np.array_equal(pb.audio(15990, 20), want[15990:16010])  # across the boundary


def test_imu_with_timestamps_is_resampled_onto_the_grid(tmp_path: Path) -> None:
    stamps = np.cumsum(np.r_[0.0, np.random.default_rng(1).uniform(0.003, 0.008, 400)])
    rows = np.stack([stamps * (c + 1) + c for c in range(6)], 1)  # linear in time
    np.savetxt(tmp_path / "imu.csv", np.c_[stamps, rows], delimiter=",",
               header="t,ax,ay,az,gx,gy,gz")
    np.save(tmp_path / "plain.npy", np.ones((50, 6)))
    pb = FilePlayback({"imu": [str(tmp_path / "imu.csv"), str(tmp_path / "plain.npy")]},
                      switch_seconds=1.0, imu_rate=200.0)
    data, times = pb.imu(0, 200)
    assert np.allclose(times, np.arange(200) / 200)
    grid_t = np.arange(200) / 200 % (len(pb.motions[0]) / 200)  # looped within segment 0
    assert np.allclose(data, np.stack([grid_t * (c + 1) + c for c in range(6)], 1), atol=1e-9)
    assert np.array_equal(pb.imu(200, 200)[0], np.ones((200, 6)))  # segment 1: the .npy


@pytest.mark.parametrize("name,content,match", [
    ("empty.wav", "empty_wav", "is empty"),
    ("bad.png", "rgb_depth", "16-bit"),
    ("nan.npy", "nan_imu", "finite"),
])
def test_bad_files_are_named_in_one_error(tmp_path: Path, name: str, content: str,
                                          match: str) -> None:
    path = tmp_path / name
    modality = {"empty_wav": "audio", "rgb_depth": "depth", "nan_imu": "imu"}[content]
    if content == "empty_wav":
        soundfile.write(path, np.zeros(0, np.float32), 16000)
    elif content == "rgb_depth":
        write_png(path, np.zeros((4, 4, 3), np.uint8))
    else:
        arr = np.zeros((10, 6))
        arr[3, 2] = np.nan
        np.save(path, arr)
    with pytest.raises(PlaybackError, match=match) as err:
        FilePlayback({modality: [str(path)]})
    assert name in str(err.value) and "\n" not in str(err.value)


def test_unknown_modality_and_bad_switch_are_refused() -> None:
    with pytest.raises(PlaybackError, match="unknown modalities"):
        FilePlayback({"lidar": ["x"]})
    with pytest.raises(PlaybackError, match="switch_seconds"):
        FilePlayback({}, switch_seconds=0.0)
