"""Real-data adapters (training/datasets/) on small fake copies of each layout.

Each fake sample carries its identity in its pixel / sample values, so a test can tell
whether an adapter paired the right image with the right X, kept orientations and units,
and decoded bit-rotated or MATLAB-transposed storage correctly.
"""

from __future__ import annotations

import csv
import logging
import tarfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import soundfile
import torch
from PIL import Image
from scipy.io import savemat

from imagebind_ros.preprocess import (
    audio_to_tensor,
    depth_to_tensor,
    imu_to_tensor,
    thermal_to_tensor,
)
from training.augment import crop, hflip, random_crop_box, view_rng
from training.config import load_config
from training.data import Transforms, build_eval_dataset, build_pair_dataset, pair_loader
from training.datasets import sunrgbd_depth_mm
from training.hub import load_hub
from training.model_io import build_config
from training.train import main as train_main

TINY = str(Path(__file__).resolve().parents[1] / "training" / "configs" / "tiny.yaml")
SR = 16000


@pytest.fixture(scope="module")
def tf() -> Transforms:
    cfg = load_config(TINY, ["--modalities", "audio,depth,thermal,imu"])
    hub = load_hub(cfg["hub"])
    return Transforms(build_config(cfg, hub.out_dim), hub.image_transform)


def _vision(tf: Transforms, rgb: np.ndarray) -> torch.Tensor:
    return tf.image(rgb)


def _rgb(value: int, h: int = 24, w: int = 32) -> np.ndarray:
    """A flat colour that encodes ``value`` (JPEG keeps flat areas within +-2)."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = (value, 255 - value, 128)
    return img


def _gradient(h: int, w: int, k: int) -> np.ndarray:
    """An RGB image whose orientation is visible: rows and columns have different ramps."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([(y * 9 + k) % 256, (x * 7 + k) % 256, (x + y + k) % 256],
                    -1).astype(np.uint8)


# --------------------------------------------------------------------------- folder / LLVIP
def _llvip(root: Path, n: int, split: str = "train") -> None:
    for i in range(n):
        for sub in ("visible", "infrared"):
            (root / sub / split).mkdir(parents=True, exist_ok=True)
        Image.fromarray(_rgb(20 * i)).save(root / "visible" / split / f"{i:06d}.jpg")
        # LLVIP's infrared frames are 3-channel grey JPEGs
        ir = np.full((24, 32, 3), 10 + 30 * i, np.uint8)
        Image.fromarray(ir).save(root / "infrared" / split / f"{i:06d}.jpg")


def test_llvip_and_folder_pair_files_by_name(tmp_path: Path, tf: Transforms,
                                             caplog: pytest.LogCaptureFixture) -> None:
    _llvip(tmp_path, 5)
    Image.fromarray(_rgb(0)).save(tmp_path / "visible" / "train" / "lonely.jpg")
    with caplog.at_level(logging.WARNING):
        ds = build_pair_dataset({"kind": "llvip", "root": str(tmp_path)}, "thermal", tf)
    assert "1 files without a partner" in caplog.text
    assert len(ds) == 5
    for i in range(5):
        item = ds.load(i, 0)
        k = int(ds.names[i])  # file stem = the value both files encode
        ref_rgb = _rgb(20 * k)
        assert torch.allclose(item["vision"], _vision(tf, ref_rgb), atol=0.1)
        ref_ir = np.full((24, 32), 10 + 30 * k, np.uint8)
        assert torch.allclose(item["thermal"], thermal_to_tensor(
            ref_ir, tf.config.modality("thermal")), atol=0.05)
    # the generic folder kind with the same layout gives the same pairs
    same = build_pair_dataset({"kind": "folder", "root": str(tmp_path), "image_dir": "visible",
                               "x_dir": "infrared", "split": "train"}, "thermal", tf)
    torch.testing.assert_close(same.load(3, 0)["thermal"], ds.load(3, 0)["thermal"])
    with pytest.raises(ValueError, match="thermal"):
        build_pair_dataset({"kind": "llvip", "root": str(tmp_path)}, "depth", tf)
    with pytest.raises(FileNotFoundError, match="not a directory"):
        build_pair_dataset({"kind": "llvip", "root": str(tmp_path), "split": "test"},
                           "thermal", tf)
    with pytest.raises(KeyError, match="unknown keys"):
        build_pair_dataset({"kind": "llvip", "root": str(tmp_path), "x_folder": "ir"},
                           "thermal", tf)
    # LLVIP as an evaluation set: unlabelled (retrieval), the test split
    _llvip(tmp_path, 3, "test")
    ev = build_eval_dataset({"kind": "llvip", "root": str(tmp_path)}, tf)
    assert len(ev) == 3 and ev.modalities == ("vision", "thermal") and ev.classnames is None


def test_folder_depth_views_crop_image_and_depth_at_the_same_place(
        tmp_path: Path, tf: Transforms) -> None:
    for i in range(3):
        (tmp_path / "rgb").mkdir(exist_ok=True)
        (tmp_path / "depth").mkdir(exist_ok=True)
        Image.fromarray(_gradient(30, 40, i)).save(tmp_path / "rgb" / f"f{i}.png")
        mm = (1000 + 50 * np.arange(30 * 40).reshape(30, 40) + i).astype(np.uint16)
        Image.fromarray(mm).save(tmp_path / "depth" / f"f{i}.png")
    spec = {"kind": "folder", "root": str(tmp_path), "image_dir": "rgb", "x_dir": "depth",
            "views": 4, "crop": [0.3, 0.8], "seed": 5}
    ds = build_pair_dataset(spec, "depth", tf)
    dcfg = tf.config.modality("depth")
    for i in range(3):
        rgb = np.array(Image.open(tmp_path / "rgb" / f"f{i}.png"))
        mm = np.array(Image.open(tmp_path / "depth" / f"f{i}.png")).astype(np.uint16)
        for v in (1, 2):
            box = random_crop_box(view_rng(5, i, v), (0.3, 0.8), aspect=40 / 30)
            c_rgb, c_mm = crop(rgb, box), crop(mm, box)
            if v % 2:
                c_rgb, c_mm = hflip(c_rgb), hflip(c_mm)
            got = ds.load(i, v)
            torch.testing.assert_close(got["vision"], _vision(tf, c_rgb))
            torch.testing.assert_close(got["depth"], depth_to_tensor(c_mm, dcfg, units="mm"))
            # the cache reads images, training does not: the same depth either way
            torch.testing.assert_close(ds.load(i, v, image=False)["depth"], got["depth"])


# --------------------------------------------------------------------------- manifest
def _tone(freq: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("delim", [",", "\t"])
def test_manifest_pairs_rows_and_labels(tmp_path: Path, tf: Transforms, delim: str) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "snd").mkdir()
    rows = []
    for i in range(4):
        Image.fromarray(_rgb(40 * i)).save(tmp_path / "img" / f"{i}.png")
        soundfile.write(tmp_path / "snd" / f"{i}.wav", _tone(300 + 200 * i), SR,
                        subtype="FLOAT")
        rows.append({"image": f"img/{i}.png", "audio": f"snd/{i}.wav",
                     "label": ["dog", "car"][i % 2]})
    path = tmp_path / ("m.csv" if delim == "," else "m.tsv")
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, ["image", "audio", "label"], delimiter=delim)
        w.writeheader()
        w.writerows(rows[::-1])  # listed in reverse: row order, not file order, counts
    ds = build_pair_dataset({"kind": "manifest", "path": str(path)}, "audio", tf)
    acfg = tf.config.modality("audio")
    for r in range(4):
        i = 3 - r
        item = ds.load(r, 0)
        torch.testing.assert_close(item["audio"], audio_to_tensor(_tone(300 + 200 * i), SR,
                                                                  acfg), atol=1e-4, rtol=0)
        torch.testing.assert_close(item["vision"], _vision(tf, _rgb(40 * i)))
    ev = build_eval_dataset({"kind": "manifest", "path": str(path), "modality": "audio",
                             "label_column": "label"}, tf)
    assert ev.classnames == ["car", "dog"]
    assert [ev.label(r) for r in range(4)] == [0, 1, 0, 1]  # rows 3, 2, 1, 0
    ev = build_eval_dataset({"kind": "manifest", "path": str(path), "modality": "audio",
                             "label_column": "label", "classes": ["dog"]}, tf)
    assert len(ev) == 2 and ev.classnames == ["dog"]
    with pytest.raises(ValueError, match="no column"):
        build_pair_dataset({"kind": "manifest", "path": str(path), "x_column": "wav"},
                           "audio", tf)
    (tmp_path / "snd" / "2.wav").unlink()
    with pytest.raises(FileNotFoundError, match="1 listed files"):
        build_pair_dataset({"kind": "manifest", "path": str(path)}, "audio", tf)


# --------------------------------------------------------------------------- webdataset
def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    import io
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _png(arr: np.ndarray) -> bytes:
    import io
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _npy(arr: np.ndarray) -> bytes:
    import io
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _shards(tmp_path: Path) -> list[Path]:
    paths = []
    depth = {}
    for s in range(2):
        p = tmp_path / f"shard-{s:04d}.tar"
        with tarfile.open(p, "w") as tar:
            for j in range(3):
                k = 3 * s + j
                _add(tar, f"sample{k:03d}.jpg", _jpeg(_rgb(30 * k)))
                if k == 4:  # float metres as .npy
                    depth[k] = np.full((24, 32), 1.5 + 0.1 * k, np.float32)
                    _add(tar, f"sample{k:03d}.npy", _npy(depth[k]))
                else:  # 16-bit millimetres, webdataset style "key.depth.png"
                    depth[k] = np.full((24, 32), 700 + 100 * k, np.uint16)
                    _add(tar, f"sample{k:03d}.depth.png", _png(depth[k]))
                _add(tar, f"sample{k:03d}.json", b"{}")
            _add(tar, "orphan.jpg", _jpeg(_rgb(1)))  # no depth: skipped
        paths.append(p)
    _shards.depth = depth  # type: ignore[attr-defined]
    return paths


def _jpeg(arr: np.ndarray) -> bytes:
    import io
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def test_webdataset_shards_random_access(tmp_path: Path, tf: Transforms,
                                         caplog: pytest.LogCaptureFixture) -> None:
    _shards(tmp_path)
    depth = _shards.depth  # type: ignore[attr-defined]
    with caplog.at_level(logging.WARNING):
        ds = build_pair_dataset({"kind": "webdataset", "shards": str(tmp_path / "*.tar")},
                                "depth", tf)
    assert "2 samples lack" in caplog.text and len(ds) == 6
    dcfg = tf.config.modality("depth")
    for i in [5, 0, 4, 2]:  # any order: every read seeks to its own members
        k = int(ds.items[i][0][-3:])
        units = "m" if k == 4 else "mm"
        item = ds.load(i, 0)
        torch.testing.assert_close(item["depth"], depth_to_tensor(depth[k], dcfg, units=units))
        assert torch.allclose(item["vision"], _vision(tf, _rgb(30 * k)), atol=0.1)
    # in DataLoader worker processes (each opens its own file handles)
    batches = [[(0, 0), (5, 0)], [(3, 0), (1, 0)]]
    got = list(pair_loader(ds, batches, image=False, num_workers=2, seed=0))
    torch.testing.assert_close(got[1]["depth"][0], ds.load(3, 0)["depth"])
    bad = tmp_path / "bad" / "broken.tar"
    bad.parent.mkdir()
    bad.write_bytes(b"not a tar file" * 100)
    with pytest.raises(ValueError, match="cannot be read"):
        build_pair_dataset({"kind": "webdataset", "shards": [str(bad)]}, "depth", tf)


def test_training_runs_on_webdataset_shards_with_the_cache(tmp_path: Path) -> None:
    _shards(tmp_path)
    out = tmp_path / "run"
    spec = "{kind: webdataset, shards: '%s', views: 2}" % (tmp_path / "*.tar")
    assert train_main(["--config", TINY, "--modalities", "depth", "--data.train.depth", spec,
                       "--data.eval", "null", "--batch_size", "4", "--epochs", "1",
                       "--out_dir", str(out), "--log.progress", "false",
                       "--log.tensorboard", "false"]) == 0
    cached = list((out / "hub_cache").glob("depth-*.npy"))
    assert len(cached) == 1 and np.load(cached[0]).shape[:2] == (6, 2)


# --------------------------------------------------------------------------- NYU Depth v2
def test_nyu_depth_v2_mat_layout_and_splits(tmp_path: Path, tf: Transforms) -> None:
    n, h, w = 5, 12, 16
    rgb = np.stack([_gradient(h, w, 11 * i) for i in range(n)])  # (N, H, W, 3)
    dep = np.stack([1.0 + np.arange(h * w, dtype=np.float32).reshape(h, w) / 100 + i
                    for i in range(n)])
    scenes = ["kitchen", "bedroom", "kitchen", "living_room", "bedroom"]
    path = tmp_path / "nyu_depth_v2_labeled.mat"
    with h5py.File(path, "w") as f:
        # MATLAB v7.3 stores arrays transposed: images (N, 3, W, H), depths (N, W, H)
        f["images"] = rgb.transpose(0, 3, 2, 1)
        f["depths"] = dep.transpose(0, 2, 1)
        refs = []
        for i, s in enumerate(scenes):
            f[f"#refs#/s{i}"] = np.array([[ord(c)] for c in s], np.uint16)
            refs.append(f[f"#refs#/s{i}"].ref)
        f.create_dataset("sceneTypes", data=np.array([refs], dtype=h5py.ref_dtype))
    savemat(tmp_path / "splits.mat", {"trainNdxs": np.array([[1], [2], [4]]),
                                      "testNdxs": np.array([[3], [5]])})
    ds = build_pair_dataset({"kind": "nyu_depth_v2", "path": str(path),
                             "splits": str(tmp_path / "splits.mat")}, "depth", tf)
    assert ds.index == [0, 1, 3]
    np.testing.assert_array_equal(ds.read_image(2), rgb[3])  # orientation restored
    d = ds.read_x(2)
    np.testing.assert_array_equal(d.array, dep[3])
    assert d.units == "m"
    torch.testing.assert_close(ds.load(2, 0)["depth"], depth_to_tensor(
        dep[3], tf.config.modality("depth"), units="m"))
    ev = build_eval_dataset({"kind": "nyu_depth_v2", "path": str(path),
                             "splits": str(tmp_path / "splits.mat")}, tf)
    assert ev.classnames == ["bedroom", "kitchen"]  # scenes of samples 3 and 5
    assert [ev.label(i) for i in range(len(ev))] == [1, 0]
    with pytest.raises(ValueError, match="splits"):
        build_pair_dataset({"kind": "nyu_depth_v2", "path": str(path)}, "depth", tf)
    (tmp_path / "not.mat").write_bytes(b"MATLAB 5.0 MAT-file" + bytes(200))
    with pytest.raises(ValueError, match="HDF5"):
        build_pair_dataset({"kind": "nyu_depth_v2", "path": str(tmp_path / "not.mat"),
                            "split": "all"}, "depth", tf)


# --------------------------------------------------------------------------- SUN RGB-D
def test_sunrgbd_bit_rotated_depth_by_hand() -> None:
    # millimetres m are stored rotated left by 3 bits: s = (m << 3 | m >> 13) & 0xffff
    assert sunrgbd_depth_mm(np.array([9872], np.uint16))[0] == 1234  # 1234 << 3 = 9872
    assert sunrgbd_depth_mm(np.array([1], np.uint16))[0] == 8192  # the low bits wrap around
    mm = np.arange(0, 65536, 7, dtype=np.uint32)
    stored = ((mm << 3) | (mm >> 13)) & 0xFFFF
    np.testing.assert_array_equal(sunrgbd_depth_mm(stored.astype(np.uint16)), mm)


def test_sunrgbd_layout_and_scene_labels(tmp_path: Path, tf: Transforms) -> None:
    scenes = ["office", "bathroom", "office"]
    mms = {}
    for i, s in enumerate(scenes):
        d = tmp_path / "SUNRGBD" / "kv2" / "kinect2data" / f"0000{i}_2014"
        (d / "image").mkdir(parents=True)
        (d / "depth_bfx").mkdir()
        (d / "depth").mkdir()
        Image.fromarray(_rgb(50 * i)).save(d / "image" / f"img_{i}.jpg")
        mm = np.full((24, 32), 800 + 700 * i, np.uint32)
        mm[0, 0] = 9000  # > 8191 mm: its top bits wrap into the low bits when stored
        mms[i] = mm
        stored = (((mm << 3) | (mm >> 13)) & 0xFFFF).astype(np.uint16)
        Image.fromarray(stored).save(d / "depth_bfx" / f"d_{i}.png")
        (d / "scene.txt").write_text(s + "\n")
    (tmp_path / "SUNRGBD" / "kv2" / "broken" / "image").mkdir(parents=True)  # no depth
    ds = build_pair_dataset({"kind": "sunrgbd", "root": str(tmp_path / "SUNRGBD")}, "depth",
                            tf)
    assert len(ds) == 3
    for i in range(3):
        d = ds.read_x(i)
        assert d.units == "mm"
        np.testing.assert_array_equal(d.array, mms[i].astype(np.uint16))
    ev = build_eval_dataset({"kind": "sunrgbd", "root": str(tmp_path / "SUNRGBD")}, tf)
    assert ev.classnames == ["bathroom", "office"]
    assert [ev.label(i) for i in range(3)] == [1, 0, 1]
    assert set(ev.load(1)) == {"vision", "depth"}


# --------------------------------------------------------------------------- ESC-50
def test_esc50_layout_classes_and_folds(tmp_path: Path, tf: Transforms) -> None:
    (tmp_path / "meta").mkdir()
    (tmp_path / "audio").mkdir()
    rows = [("1-100-A-0.wav", 1, 0, "dog"), ("2-101-A-3.wav", 2, 3, "cow"),
            ("3-102-A-0.wav", 3, 0, "dog"), ("1-103-A-1.wav", 1, 1, "rooster"),
            ("2-104-A-49.wav", 2, 49, "hand_saw")]
    with open(tmp_path / "meta" / "esc50.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        for j, (fn, fold, target, cat) in enumerate(rows):
            w.writerow([fn, fold, target, cat, "False", fn[2:5], "A"])
            soundfile.write(tmp_path / "audio" / fn, _tone(200 + 100 * j, 0.5), 44100,
                            subtype="FLOAT")
    ev = build_eval_dataset({"kind": "esc50", "root": str(tmp_path)}, tf)
    assert ev.classnames == ["dog", "rooster", "cow", "hand saw"]  # ordered by target
    assert [ev.label(i) for i in range(5)] == [0, 2, 0, 1, 3]
    torch.testing.assert_close(ev.load(1)["audio"], audio_to_tensor(
        _tone(300, 0.5), 44100, tf.config.modality("audio")), atol=1e-4, rtol=0)
    ev2 = build_eval_dataset({"kind": "esc50", "root": str(tmp_path), "folds": [2]}, tf)
    assert len(ev2) == 2 and ev2.classnames == ["cow", "hand saw"]
    assert ev.modalities == ("audio",)


# --------------------------------------------------------------------------- ROS 2 bags
T0 = 1_700_000_000.0


def _write_bag(path: Path) -> dict[str, object]:
    from rosbags.rosbag2 import Writer

    from training.datasets import typestore
    ts = typestore()
    T = ts.types
    Header, Time = T["std_msgs/msg/Header"], T["builtin_interfaces/msg/Time"]

    def header(t: float) -> object:
        sec = int(t)
        return Header(stamp=Time(sec=sec, nanosec=round((t - sec) * 1e9)), frame_id="f")

    def image(t: float, arr: np.ndarray, enc: str) -> object:
        h, w = arr.shape[:2]
        return T["sensor_msgs/msg/Image"](
            header=header(t), height=h, width=w, encoding=enc, is_bigendian=0,
            step=arr.strides[0], data=np.frombuffer(arr.tobytes(), np.uint8))

    frames = [T0 + 1.0 + 0.1 * k for k in range(12)]
    with Writer(path, version=9) as writer:
        cam = writer.add_connection("/camera", "sensor_msgs/msg/Image", typestore=ts)
        ir = writer.add_connection("/thermal", "sensor_msgs/msg/Image", typestore=ts)
        imu = writer.add_connection("/imu", "sensor_msgs/msg/Imu", typestore=ts)
        mic = writer.add_connection("/audio", "imagebind_ros/msg/AudioChunk", typestore=ts)
        msgs: list[tuple[float, object, object, str]] = []
        for k, t in enumerate(frames):
            msgs.append((t, cam, image(t, _rgb(10 * k), "rgb8"), "sensor_msgs/msg/Image"))
            if k != 7:  # frame 7 has no thermal frame within the tolerance
                ir_arr = np.full((24, 32), 3000 + 100 * k, np.uint16)
                msgs.append((t + 0.01, ir, image(t + 0.01, ir_arr, "mono16"),
                             "sensor_msgs/msg/Image"))
        for j in range(int(2.3 * 200)):  # IMU at 200 Hz from T0: accel x = time since T0
            t = T0 + j / 200
            v3 = T["geometry_msgs/msg/Vector3"]
            m = T["sensor_msgs/msg/Imu"](
                header=header(t), orientation=T["geometry_msgs/msg/Quaternion"](
                    x=0.0, y=0.0, z=0.0, w=1.0), orientation_covariance=np.zeros(9),
                angular_velocity=v3(x=0.0, y=0.0, z=1.0), angular_velocity_covariance=np.zeros(9),
                linear_acceleration=v3(x=t - T0, y=0.0, z=9.81),
                linear_acceleration_covariance=np.zeros(9))
            msgs.append((t, imu, m, "sensor_msgs/msg/Imu"))
        # audio from T0 + 0.5 in 320-sample chunks: sample value = its index (scaled)
        for c in range(int(1.8 * SR / 320)):
            idx = np.arange(c * 320, (c + 1) * 320)
            pcm = ((idx % 30000) - 15000).astype("<i2")
            m = T["imagebind_ros/msg/AudioChunk"](
                header=header(T0 + 0.5 + c * 320 / SR), sample_rate=SR, channels=1,
                sample_format="S16LE", data=np.frombuffer(pcm.tobytes(), np.uint8))
            msgs.append((T0 + 0.5 + c * 320 / SR, mic, m, "imagebind_ros/msg/AudioChunk"))
        msgs.sort(key=lambda x: x[0])
        for t, conn, m, mtype in msgs:
            writer.write(conn, int((t + 0.002) * 1e9), ts.serialize_cdr(m, mtype))
    return {"frames": frames}


def test_rosbag_pairs_frames_and_windows_by_timestamp(tmp_path: Path, tf: Transforms,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    bag = tmp_path / "bag"
    frames = _write_bag(bag)["frames"]
    assert isinstance(frames, list)
    base = {"kind": "rosbag", "path": str(bag), "image_topic": "/camera"}
    # thermal: nearest frame within 20 ms; frame 7 has none
    with caplog.at_level(logging.WARNING):
        th = build_pair_dataset({**base, "x_topic": "/thermal", "tolerance": 0.02}, "thermal",
                                tf)
    assert len(th) == 11 and "1 of 12 frames" in caplog.text
    tcfg = tf.config.modality("thermal")
    for i in range(11):
        k = round((th.items[i][0] - T0 - 1.0) / 0.1)
        assert k != 7
        np.testing.assert_array_equal(th.read_x(i), np.full((24, 32), 3000 + 100 * k))
        np.testing.assert_array_equal(th.read_image(i), _rgb(10 * k))
    torch.testing.assert_close(th.load(0, 0)["thermal"], thermal_to_tensor(
        np.full((24, 32), 3000, np.uint16), tcfg))
    # IMU: the tiny config's 2-s window ending at each frame; frames before T0 + 2 lack one
    imu = build_pair_dataset({**base, "x_topic": "/imu"}, "imu", tf)
    kept = [round((t - T0 - 1.0) / 0.1) for t, *_ in imu.items]
    assert kept == [10, 11]  # frames at T0 + 2.0 and T0 + 2.1
    motion = imu.read_x(1)
    samples, stamps = motion.samples, motion.times
    assert frames[11] - 1 / 200 < stamps[-1] <= frames[11]
    assert frames[11] - 2.0 - 1 / 200 < stamps[0] <= frames[11] - 2.0  # covers the window
    np.testing.assert_allclose(samples[:, 0], stamps - T0, atol=1e-9)  # accel x = time
    torch.testing.assert_close(imu.load(1, 0)["imu"], imu_to_tensor(
        samples, stamps, tf.config.modality("imu")))
    # a tolerance below the 5-ms sample spacing: every window has "gaps", none is kept
    with pytest.raises(ValueError, match="empty"):
        build_pair_dataset({**base, "x_topic": "/imu", "tolerance": 0.004}, "imu", tf)
    # audio: 2 clips x 0.5 s = 1 s ending at the frame; audio starts at T0 + 0.5
    au = build_pair_dataset({**base, "x_topic": "/audio", "tolerance": 0.03}, "audio", tf)
    kept = [round((t - T0 - 1.0) / 0.1) for t, *_ in au.items]
    assert kept == list(range(5, 12))  # from T0 + 1.5, whose window starts with the audio
    sound = au.read_x(len(au) - 1)
    wav, sr = sound.samples, sound.sample_rate
    t_frame = au.items[-1][0]
    # the window's last sample is the one at the frame time: samples (t - 1 s, t]
    first = round((t_frame - 1.0 - T0 - 0.5) * SR) + 1
    want = ((np.arange(first, first + SR) % 30000) - 15000) / 32768.0
    assert sr == SR and wav.shape == (SR, 1)
    np.testing.assert_allclose(wav[:, 0], want, atol=1e-6)
    torch.testing.assert_close(au.load(len(au) - 1, 0)["audio"], audio_to_tensor(
        want.astype(np.float32), SR, tf.config.modality("audio")))
    with pytest.raises(ValueError, match="no topic"):
        build_pair_dataset({**base, "x_topic": "/nope"}, "imu", tf)
    with pytest.raises(ValueError, match="must be sensor_msgs/msg/Imu"):
        build_pair_dataset({**base, "x_topic": "/thermal"}, "imu", tf)
