"""The ``rosbag`` training dataset reads every sensor format the drivers record, in both
rosbag2 storages (sqlite3 and MCAP), through ``imagebind_ros.decode``.

Messages are built as the drivers build them (``ros.conversions``: row padding in ``step``,
big-endian samples, image_transport's format strings), serialised by rclpy (the bytes a
recorder writes) and written with ``rosbags``; audio_common's messages come from the fixture
definitions (tests/fixtures/interfaces), stored in the bag as a recorder stores them. What
comes out is compared with the source arrays (exact where the format is lossless; within the
codec's error for Bayer, YUV and JPEG; within the inverse-depth quantisation step) and with
hand-computed streams. Unsupported data fails when the dataset is BUILT, with one message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ros_required import require_ros

require_ros()
from rclpy.serialization import serialize_message  # noqa: E402

from imagebind_ros.ros import conversions as cv  # noqa: E402
from training.config import load_config  # noqa: E402
from training.data import Transforms, build_pair_dataset  # noqa: E402
from training.datasets import typestore  # noqa: E402
from training.hub import load_hub  # noqa: E402
from training.model_io import build_config  # noqa: E402
from training.train import main as train_main  # noqa: E402

TINY = str(Path(__file__).resolve().parents[1] / "training" / "configs" / "tiny.yaml")
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "interfaces"
NS = 1_000_000_000
T0 = 1_700_000_000 * NS
SR = 16000
FRAMES = [T0 + (21 + k) * NS // 10 for k in range(4)]  # after 2 s of streams (IMU window)
H, W = 48, 64
YY, XX = np.mgrid[0:H, 0:W]
# A smooth picture: demosaicing and chroma subsampling are then nearly exact.
RGB = np.stack([40 + 3 * XX, 30 + 4 * YY, 200 - 2 * XX], -1).astype(np.uint8)
GREY = (20 + 3 * XX + YY).astype(np.uint8)
DEPTH_MM = (500 + 40 * XX + 10 * YY).astype(np.uint16)
DEPTH_MM[5, 7] = 0  # no measurement
DEPTH_M = DEPTH_MM.astype(np.float32) / 1000
DEPTH_M[5, 7] = np.nan
THERMAL = (28000 + 50 * XX + 20 * YY).astype(np.uint16)

# camera topic -> (message builder, max mean |error| vs RGB in grey levels; 0 = exact)
CAMERA: dict[str, tuple[Any, float]] = {
    "rgb8": (lambda h: cv.numpy_to_image(RGB, "rgb8", h), 0),
    "bayer_rggb8": (lambda h: cv.numpy_to_image(RGB, "bayer_rggb8", h, step=W + 16), 4),
    "bayer_gbrg16": (lambda h: cv.numpy_to_image(RGB.astype(np.uint16) * 257, "bayer_gbrg16",
                                                 h, big_endian=True), 4),
    "yuyv": (lambda h: cv.numpy_to_image(RGB, "yuyv", h), 3),
    "uyvy": (lambda h: cv.numpy_to_image(RGB, "uyvy", h, step=2 * W + 8), 3),
    "nv21": (lambda h: cv.numpy_to_image(RGB, "nv21", h), 3),
    "8UC3": (lambda h: cv.numpy_to_image(RGB, "8UC3", h), 0),
    "rgb16": (lambda h: cv.numpy_to_image(RGB.astype(np.uint16) * 257, "rgb16", h,
                                          big_endian=True), 0),
    "jpeg": (lambda h: cv.numpy_to_compressed(RGB, "rgb8", "jpeg", h, quality=95), 3),
    "png16": (lambda h: cv.numpy_to_compressed(RGB.astype(np.uint16) * 257, "rgb16", "png",
                                               h), 0),
}
# depth topic -> (builder, units, relative tolerance)
DEPTH: dict[str, tuple[Any, str, float]] = {
    "16UC1": (lambda h: cv.numpy_to_image(DEPTH_MM, "16UC1", h, step=2 * W + 4), "mm", 0),
    "mono16": (lambda h: cv.numpy_to_image(DEPTH_MM, "mono16", h), "mm", 0),  # Orbbec
    "32FC1": (lambda h: cv.numpy_to_image(DEPTH_M, "32FC1", h, big_endian=True), "m", 0),
    "cd_png16": (lambda h: cv.numpy_to_compressed_depth(DEPTH_MM, "16UC1", "png", h), "mm",
                 0),
    "cd_rvl16": (lambda h: cv.numpy_to_compressed_depth(DEPTH_MM, "16UC1", "rvl", h), "mm",
                 0),
    # inverse-depth quantisation: dz = z^2 / (100 * 101) <= 0.3 mm per m here
    "cd_png32": (lambda h: cv.numpy_to_compressed_depth(DEPTH_M, "32FC1", "png", h), "m",
                 1e-3),
    "cd_rvl32": (lambda h: cv.numpy_to_compressed_depth(DEPTH_M, "32FC1", "rvl", h), "m",
                 1e-3),
}
THERMAL_TOPICS: dict[str, Any] = {
    "mono16": lambda h: cv.numpy_to_image(THERMAL, "mono16", h),
    "png16": lambda h: cv.numpy_to_compressed(THERMAL, "mono16", "png", h),
}


def header(ns: int) -> Any:
    return cv.make_header(ns, "sensor")


def store_for(variant: str | None = None) -> Any:
    """rosbags types of our package plus, for an audio_common ``variant``, its definitions
    (the two variants' AudioData differ, so one per bag)."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    store.register(typestore().fielddefs)
    if variant is not None:
        types: dict = {}
        for f in sorted((FIXTURES / variant / "audio_common_msgs" / "msg").glob("*.msg")):
            types.update(get_types_from_msg(f.read_text(), f"audio_common_msgs/msg/{f.stem}"))
        store.register(types)
    return store


def imu_msg(ns: int, accel: tuple[float, ...] | None, gyro: tuple[float, ...] | None
            ) -> Any:
    """sensor_msgs/Imu as realsense2_camera fills gyro/sample, accel/sample or one topic:
    a field it does not provide is 0 (REP 145 would say -1; the test marks ``None`` so)."""
    from sensor_msgs.msg import Imu

    m = Imu(header=header(ns))
    m.orientation_covariance[0] = -1.0
    for name, v in (("linear_acceleration", accel), ("angular_velocity", gyro)):
        if v is None:
            getattr(m, f"{name}_covariance")[0] = -1.0
        else:
            vec = getattr(m, name)
            vec.x, vec.y, vec.z = map(float, v)
    return m


def write_bag(path: Path, storage: str, msgs: dict[str, list[tuple[int, Any]]],
              store: Any = None) -> Path:
    """``topic -> [(receive ns, message)]`` into a bag: rclpy messages as rclpy serialises
    them, rosbags messages (audio_common from the fixture) as rosbags does."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    store = store or store_for()
    plugin = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}[storage]
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        for topic, rows in msgs.items():
            first = rows[0][1]
            rosbags = hasattr(first, "__msgtype__")
            mtype = (first.__msgtype__ if rosbags else
                     f"{type(first).__module__.split('.')[0]}/msg/{type(first).__name__}")
            conn = writer.add_connection(topic, mtype, typestore=store)
            for t, m in rows:
                writer.write(conn, t, store.serialize_cdr(m, mtype) if rosbags
                             else serialize_message(m))
    return path


def sensor_topics() -> dict[str, list[tuple[int, Any]]]:
    """Every image format on its own topic at FRAMES; IMU streams from T0 for 2.6 s."""
    msgs: dict[str, list[tuple[int, Any]]] = {}
    for table, prefix in ((CAMERA, "/cam/"), (DEPTH, "/depth/"), (THERMAL_TOPICS, "/thermal/")):
        for name, entry in table.items():
            build = entry[0] if isinstance(entry, tuple) else entry
            msgs[prefix + name] = [(t + 2_000_000, build(header(t))) for t in FRAMES]
    imu_t = [T0 + k * NS // 200 for k in range(int(2.6 * 200))]
    msgs["/imu"] = [(t, imu_msg(t, ((t - T0) / NS, 0, 9.81), (0, 0, 1))) for t in imu_t]
    # RealSense defaults: gyro 200 Hz, accel 63 Hz, each with only its own field
    msgs["/gyro"] = [(t, imu_msg(t, (0, 0, 0), (0, 0, (t - T0) / NS))) for t in imu_t]
    acc_t = [T0 + k * NS // 63 for k in range(int(2.6 * 63) + 1)]
    msgs["/accel"] = [(t, imu_msg(t, (2 * (t - T0) / NS, 0, 9.81), (0, 0, 0))) for t in acc_t]
    msgs["/imu_rep145"] = [(t, imu_msg(t, None, (0, 0, 1))) for t in imu_t]
    return msgs


@pytest.fixture(scope="module")
def tf() -> Transforms:
    cfg = load_config(TINY, ["--modalities", "audio,depth,thermal,imu"])
    hub = load_hub(cfg["hub"])
    return Transforms(build_config(cfg, hub.out_dim), hub.image_transform)


@pytest.fixture(scope="module", params=["sqlite3", "mcap"])
def bag(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp(request.param) / "bag"
    return write_bag(path, request.param, sensor_topics())


def pairs(bag: Path, tf: Transforms, image: str, x: str, modality: str, **kw: Any) -> Any:
    return build_pair_dataset({"kind": "rosbag", "path": str(bag), "image_topic": image,
                               "x_topic": x, **kw}, modality, tf)


def test_every_camera_and_depth_format(bag: Path, tf: Transforms) -> None:
    """Each camera format against the source picture, each depth format against the source
    distances (units kept: mm stays mm, m stays m), each row through ``load`` (the tensors
    training sees)."""
    for (cam, (_, tol)), (depth, (_, units, rtol)) in zip(
            CAMERA.items(), list(DEPTH.items()) * 2):
        ds = pairs(bag, tf, f"/cam/{cam}", f"/depth/{depth}", "depth")
        assert len(ds) == len(FRAMES), (cam, depth)
        got = ds.read_image(0)
        assert got.dtype == np.uint8 and got.shape == (H, W, 3), cam
        err = np.abs(got.astype(float) - RGB).mean()
        assert err <= tol, (cam, err)
        d = ds.read_x(0)
        assert d.units == units, depth
        want = DEPTH_MM if units == "mm" else DEPTH_M
        if rtol == 0:
            np.testing.assert_array_equal(d.array, want, err_msg=depth)
        else:
            valid = np.isfinite(want)
            np.testing.assert_allclose(d.array[valid], want[valid], rtol=rtol, err_msg=depth)
            assert np.isnan(d.array[5, 7])
        batch = ds.load(0, 0)
        assert set(batch) == {"vision", "depth"} and batch["depth"].isfinite().all()


def test_thermal_and_16bit_grey_camera(bag: Path, tf: Transforms) -> None:
    for name in THERMAL_TOPICS:
        ds = pairs(bag, tf, "/cam/rgb8", f"/thermal/{name}", "thermal")
        np.testing.assert_array_equal(ds.read_x(1), THERMAL, err_msg=name)


def test_imu_one_topic_and_realsense_separate_topics(bag: Path, tf: Transforms) -> None:
    one = pairs(bag, tf, "/cam/rgb8", "/imu", "imu")
    s = one.read_x(0)
    np.testing.assert_allclose(s.samples[:, 0], s.times - T0 / NS, atol=1e-6)
    # gyro 200 Hz + accel 63 Hz: accel linear in time, so interpolation at the gyro stamps
    # is exact: ax = 2 (t - T0), gz = t - T0
    two = pairs(bag, tf, "/cam/rgb8", "/gyro", "imu", accel_topic="/accel")
    s = two.read_x(0)
    rel = s.times - T0 / NS
    assert len(rel) > 300 and np.all(np.diff(rel) > 0)
    np.testing.assert_allclose(s.samples[:, 0], 2 * rel, atol=1e-6)
    np.testing.assert_allclose(s.samples[:, 5], rel, atol=1e-6)
    np.testing.assert_allclose(s.samples[:, 2], 9.81)
    assert two.load(0, 0)["imu"].isfinite().all()


@pytest.mark.parametrize("case", ["signed", "jpeg_depth", "rep145", "gyro_only",
                                  "realsense_one_topic", "type"])
def test_unsupported_fails_at_construction(tmp_path: Path, tf: Transforms, case: str) -> None:
    """One ValueError naming the topic and the reason, raised when the dataset is built."""
    from sensor_msgs.msg import Image

    msgs = sensor_topics()
    signed = Image(header=header(FRAMES[2]), height=2, width=2, encoding="16SC1", step=4,
                   data=bytes(8))
    msgs["/cam/mixed"] = msgs["/cam/rgb8"][:2] + [(FRAMES[2], signed)]
    msgs["/depth/jpeg"] = [(t, cv.numpy_to_compressed(GREY, "mono8", "jpeg", header(t)))
                           for t in FRAMES]
    bag = write_bag(tmp_path / "bag", "mcap", msgs)
    spec = {"signed": ("/cam/mixed", "/depth/16UC1", "depth", {}, "/cam/mixed.*16SC1"),
            "jpeg_depth": ("/cam/rgb8", "/depth/jpeg", "depth", {}, "JPEG"),
            "rep145": ("/cam/rgb8", "/imu_rep145", "imu", {}, "REP 145"),
            "gyro_only": ("/cam/rgb8", "/gyro", "imu", {"accel_topic": "/imu_rep145"},
                          "without accel"),
            # RealSense gyro/sample alone: accel 0 with a valid covariance in every message
            "realsense_one_topic": ("/cam/rgb8", "/gyro", "imu", {}, "exactly 0"),
            "type": ("/cam/rgb8", "/depth/16UC1", "imu", {}, "must be sensor_msgs/msg/Imu")}
    image, x, modality, kw, match = spec[case]
    with pytest.raises(ValueError, match=match):
        pairs(bag, tf, image, x, modality, **kw)


def _pcm(n: int, start: int = 0) -> np.ndarray:
    return ((np.arange(start, start + n) % 30000) - 15000).astype(np.int16)


@pytest.mark.parametrize("variant", ["mgonzs13", "ros_drivers"])
def test_audio_common_bags(tmp_path: Path, tf: Transforms, variant: str) -> None:
    """audio_common's own messages, as its capture nodes fill them, from 0.5 s in 320-frame
    chunks; the window ending at a frame holds exactly the samples sent up to it."""
    store = store_for(variant)
    T = store.types
    hdr = T["std_msgs/msg/Header"]
    rows = []
    for c in range(int(1.9 * SR / 320)):
        t = T0 + NS // 2 + c * 320 * NS // SR
        pcm = _pcm(320, c * 320)
        stamp = T["builtin_interfaces/msg/Time"](sec=t // NS, nanosec=t % NS)
        if variant == "mgonzs13":
            data = T["audio_common_msgs/msg/AudioData"](
                float32_data=np.zeros(0, np.float32), int32_data=np.zeros(0, np.int32),
                int16_data=pcm, int8_data=np.zeros(0, np.int8), uint8_data=np.zeros(0, np.uint8))
            info = T["audio_common_msgs/msg/AudioInfo"](format=8, channels=1, rate=SR,
                                                          chunk=320)
            msg = T["audio_common_msgs/msg/AudioStamped"](
                header=hdr(stamp=stamp, frame_id="mic"),
                audio=T["audio_common_msgs/msg/Audio"](audio_data=data, info=info))
        else:
            msg = T["audio_common_msgs/msg/AudioDataStamped"](
                header=hdr(stamp=stamp, frame_id="mic"),
                audio=T["audio_common_msgs/msg/AudioData"](
                    data=np.frombuffer(pcm.astype("<i2").tobytes(), np.uint8)))
        rows.append((t, msg))
    msgs = {"/cam": [(t, cv.numpy_to_image(RGB, "rgb8", header(t))) for t in FRAMES[:2]],
            "/audio": rows}
    if variant == "ros_drivers":
        msgs["/audio_info"] = [(T0, T["audio_common_msgs/msg/AudioInfo"](
            channels=1, sample_rate=SR, sample_format="S16LE", bitrate=0,
            coding_format="wave"))]
    bag = write_bag(tmp_path / "bag", "sqlite3", msgs, store)
    ds = pairs(bag, tf, "/cam", "/audio", "audio", tolerance=0.03)
    assert len(ds) == 2
    sound = ds.read_x(0)
    first = round((FRAMES[0] - NS - T0 - NS // 2) * SR / NS) + 1
    np.testing.assert_allclose(sound.samples[:, 0], _pcm(SR, first) / 32768, atol=1e-7)
    assert ds.load(0, 0)["audio"].isfinite().all()
    if variant == "ros_drivers":  # without its AudioInfo the format is unknown: refused
        del msgs["/audio_info"]
        bag = write_bag(tmp_path / "noinfo", "mcap", msgs, store)
        with pytest.raises(ValueError, match="AudioInfo"):
            pairs(bag, tf, "/cam", "/audio", "audio")


def test_training_runs_on_bags(bag: Path, tmp_path: Path) -> None:
    """A training epoch on a Bayer camera and rvl compressedDepth 32FC1 (sqlite3, mcap)."""
    spec = "{kind: rosbag, path: '%s', image_topic: /cam/bayer_rggb8, x_topic: " \
           "/depth/cd_rvl32}" % bag
    assert train_main(["--config", TINY, "--modalities", "depth", "--data.train.depth", spec,
                       "--data.eval", "null", "--batch_size", "2", "--epochs", "1",
                       "--out_dir", str(tmp_path / "run"), "--log.progress", "false",
                       "--log.tensorboard", "false"]) == 0
