"""audio_common interop, on the REAL generated message classes of both packages named
``audio_common_msgs`` (ros-drivers/audio_common's ROS 2 port and the mgonzs13 fork).

Their definitions (typed from upstream) are built with colcon by ``interface_fixture`` into
``build/test_interfaces/`` once; each variant is imported in its own child process
(``audio_common_child.py``) that fills messages as the variant's capture node does, passes
them through rclpy's serialisation and decodes them. The parent checks the samples against
the integers it sent (scaled by hand), and decodes the same CDR bytes through rosbags with
types registered from the same .msg files: the bag path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from interface_fixture import FIXTURES, build_interfaces, child_env
from ros_required import require_ros

require_ros()

from imagebind_ros import decode as dec  # noqa: E402

CHILD = Path(__file__).with_name("audio_common_child.py")
RNG = np.random.default_rng(3)


@pytest.fixture(scope="session")
def variant_env() -> Any:
    cache: dict[str, dict[str, str]] = {}

    def get(variant: str) -> dict[str, str]:
        if variant not in cache:
            try:
                cache[variant] = child_env(build_interfaces(variant))
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
                if os.environ.get("IMAGEBIND_ROS_REQUIRE_ROS") == "1":
                    pytest.fail(f"cannot build the {variant} fixture: {e}", pytrace=False)
                pytest.skip(f"cannot build the {variant} fixture: {e}")
        return cache[variant]

    return get


def run_child(env: dict[str, str], variant: str, cases: list[dict]) -> dict[str, dict]:
    proc = subprocess.run([sys.executable, str(CHILD)], input=json.dumps(
        {"variant": variant, "cases": cases}), env=env, capture_output=True, text=True,
        timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {row["name"]: row for row in json.loads(proc.stdout)}


def typestore(variant: str) -> Any:
    """A rosbags typestore with the fixture's definitions of ``variant`` registered."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    ts = get_typestore(Stores.ROS2_KILTED)
    types: dict = {}
    for f in sorted((FIXTURES / variant / "audio_common_msgs" / "msg").glob("*.msg")):
        types.update(get_types_from_msg(f.read_text(), f"audio_common_msgs/msg/{f.stem}"))
    ts.register(types)
    return ts


def test_ros_drivers_audio_common(variant_env: Any) -> None:
    """audio_capture (ROS 2) with format:=wave publishes raw S16LE (its default
    sample_format) on ``audio`` (AudioData) and ``audio_stamped``; the format comes from
    ``audio_info``. Its default format:=mp3 is refused with the fix in the text."""
    stereo = RNG.integers(-32768, 32768, 2 * 160).tolist()
    mono32 = RNG.integers(-2 ** 31, 2 ** 31, 50).tolist()
    base = dict(rate=16000, coding_format="wave", stamped=False)
    cases = [dict(base, name="audio", channels=2, sample_format="S16LE", values=stereo),
             dict(base, name="stamped", channels=2, sample_format="S16LE", values=stereo,
                  stamped=True),
             dict(base, name="s32", channels=1, sample_format="S32LE", values=mono32,
                  rate=48000),
             dict(base, name="mp3", channels=1, sample_format="S16LE", values=stereo,
                  coding_format="mp3")]
    got = run_child(variant_env("ros_drivers"), "ros_drivers", cases)
    want16 = np.array(stereo, np.float64).reshape(-1, 2) / 32768
    for name in ("audio", "stamped"):
        cls = "AudioDataStamped" if name == "stamped" else "AudioData"
        assert got[name]["class"].startswith("audio_common_msgs.msg")
        assert got[name]["class"].endswith("." + cls)
        assert got[name]["rate"] == 16000
        np.testing.assert_array_equal(np.array(got[name]["samples"]), want16)
    assert got["audio"]["stamp_ns"] is None and got["stamped"]["stamp_ns"] == 7_000_000_250
    np.testing.assert_allclose(np.array(got["s32"]["samples"])[:, 0],
                               np.array(mono32) / 2 ** 31, atol=1e-7)
    assert got["mp3"]["kind"] == dec.UNSUPPORTED_FORMAT and "wave" in got["mp3"]["error"]

    ts = typestore("ros_drivers")  # the bag path: rosbags messages from the same bytes
    info = dec.read_audio_info(ts.types["audio_common_msgs/msg/AudioInfo"](
        channels=2, sample_rate=16000, sample_format="S16LE", bitrate=192,
        coding_format="wave"))
    for name in ("audio", "stamped"):
        msg = ts.deserialize_cdr(bytes.fromhex(got[name]["cdr"]), got[name]["type"])
        np.testing.assert_array_equal(dec.decode_audio(msg, info).samples, want16)


def test_mgonzs13_audio_common(variant_env: Any) -> None:
    """audio_capturer_node: AudioStamped on ``audio`` with the PortAudio format, channels,
    rate and chunk in the message, samples in the array of that format."""
    i16 = RNG.integers(-32768, 32768, 512).tolist()  # its defaults: paInt16, mono, chunk 512
    f32 = RNG.uniform(-1, 1, 2 * 64).astype(np.float32).tolist()
    u8 = RNG.integers(0, 256, 100).tolist()
    cases = [dict(name="int16", field="int16_data", format=0x08, channels=1, rate=16000,
                  values=i16),
             dict(name="float32", field="float32_data", format=0x01, channels=2, rate=44100,
                  values=f32),
             dict(name="uint8", field="uint8_data", format=0x20, channels=1, rate=8000,
                  values=u8),
             dict(name="wrong", field="float32_data", format=0x08, channels=1, rate=16000,
                  values=f32)]
    got = run_child(variant_env("mgonzs13"), "mgonzs13", cases)
    wants = {"int16": np.array(i16)[:, None] / 32768,
             "float32": np.array(f32, np.float32).reshape(-1, 2),
             "uint8": (np.array(u8)[:, None] - 128) / 128}
    ts = typestore("mgonzs13")
    for name, want in wants.items():
        assert got[name]["class"].endswith("AudioStamped")
        assert got[name]["rate"] == cases[[c["name"] for c in cases].index(name)]["rate"]
        np.testing.assert_allclose(np.array(got[name]["samples"]), want, atol=1e-7)
        msg = ts.deserialize_cdr(bytes.fromhex(got[name]["cdr"]), got[name]["type"])
        np.testing.assert_allclose(dec.decode_audio(msg).samples, want, atol=1e-7)
        assert dec.header_stamp_ns(msg) == 7_000_000_250
    assert got["wrong"]["kind"] == dec.MALFORMED
    assert "float32_data has data" in got["wrong"]["error"]
