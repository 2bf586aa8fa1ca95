"""Streaming buffers: audio windows, IMU windows, stamp gate and the newest-only mailbox.

References are independent of the code under test: windows are compared with slices of the
concatenated signal (with hand-inserted silence for gaps), IMU windows with an analytic
linear signal resampled by ``preprocess.imu_to_tensor``, and mailbox timing with a fake
clock.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from imagebind_ros.model.config import ImuConfig
from imagebind_ros.preprocess import imu_to_tensor
from imagebind_ros.streams import (NS, AudioWindower, ImuWindower, Mailbox, StampGate,
                                   StreamError)

SR = 16000


# --------------------------------------------------------------------------- stamp gate


def test_stamp_gate_refuses_backwards_then_resyncs() -> None:
    g = StampGate(slack_ns=10, resync_after=3)
    assert g.check(1000) and g.check(1000) and g.check(995)  # equal / within slack
    assert g.last_ns == 1000
    with pytest.raises(StreamError, match="backwards"):
        g.check(900)
    assert g.check(1100) and g.last_ns == 1100  # a good stamp clears the run
    for _ in range(2):
        with pytest.raises(StreamError):
            g.check(50)
    assert g.check(60) is False  # third in a row: the clock restarted
    assert g.last_ns == 60 and g.resyncs == 1 and g.check(70)


# --------------------------------------------------------------------------- audio


def chunks(signal: np.ndarray, size: int, t0_ns: int = 5 * NS):
    """(chunk, stamp of its first sample) over a (frames, ch) signal."""
    for start in range(0, len(signal) - size + 1, size):
        yield signal[start:start + size], t0_ns + start * NS // SR


def ramp(n: int, channels: int = 1) -> np.ndarray:
    x = (np.arange(n * channels, dtype=np.float32) % 30011) / 30011
    return x.reshape(n, channels)


@pytest.mark.parametrize("chunk", [320, 333])  # 333 does not divide the ring size
def test_audio_windows_are_the_last_two_seconds(chunk: int) -> None:
    sig = ramp(SR * 4, channels=2)
    w = AudioWindower(2.0, 0.5)
    got = []
    for i, (c, stamp) in enumerate(chunks(sig, chunk)):
        out = w.push(c, SR, stamp)
        if out is not None:
            got.append((i, out))
    assert len(got) >= 4
    for i, out in got:
        end = (i + 1) * chunk
        assert out.sample_rate == SR and out.samples.shape == (2 * SR, 2)
        np.testing.assert_array_equal(out.samples, sig[end - 2 * SR:end])
        assert out.stamp_ns == 5 * NS + (end - 1) * NS // SR  # last sample's capture time
    firsts = [(i + 1) * chunk for i, _ in got]
    assert firsts[0] == min(n for n in range(chunk, len(sig) + 1, chunk) if n >= 2 * SR)
    assert all(b - a >= SR // 2 for a, b in zip(firsts, firsts[1:]))  # hop respected


def test_audio_small_gap_is_silence_large_gap_restarts() -> None:
    sig = ramp(3 * SR)
    w = AudioWindower(2.0, 0.25, max_gap_s=0.1)
    parts = list(chunks(sig, 320))
    lost = set(range(50, 53))  # 60 ms of packets lost (< max_gap_s)
    last, end = None, 0
    for i, (c, stamp) in enumerate(parts):
        if i not in lost:
            out = w.push(c, SR, stamp)
            if out is not None:
                last, end = out, (i + 1) * 320
    ref = sig.copy()
    ref[50 * 320:53 * 320] = 0
    assert w.gaps_filled == 1 and last is not None and end - 2 * SR < 50 * 320
    np.testing.assert_array_equal(last.samples, ref[end - 2 * SR:end])
    # now a 0.5-s gap: the window restarts and needs 2 s of new audio
    stamp_after = parts[-1][1] + 320 * NS // SR + NS // 2
    assert w.push(sig[:320], SR, stamp_after) is None and w.restarts == 1
    outs = [w.push(sig[:320], SR, stamp_after + k * 320 * NS // SR) for k in range(1, 99)]
    assert all(o is None for o in outs)  # 99 chunks = 1.98 s
    assert w.push(sig[:320], SR, stamp_after + 99 * 320 * NS // SR) is not None


def test_audio_jitter_is_ignored_backwards_refused() -> None:
    sig = ramp(3 * SR)
    w = AudioWindower(2.0, 0.5, jitter_s=0.005)
    rng = np.random.default_rng(0)
    out, end = None, 0
    for i, (c, stamp) in enumerate(chunks(sig, 320)):
        jitter = int(rng.integers(-2, 3)) * 1_000_000  # +-2 ms driver jitter
        if i == 60:
            with pytest.raises(StreamError, match="backwards"):
                w.push(c, SR, stamp - 30_000_000)  # a stale chunk, 30 ms in the past
        new = w.push(c, SR, stamp + jitter)
        if new is not None:
            out, end = new, (i + 1) * 320
    assert out is not None and w.gaps_filled == 0 and w.restarts == 0
    np.testing.assert_array_equal(out.samples, sig[end - 2 * SR:end])


def test_audio_rate_or_channel_change_is_refused() -> None:
    w = AudioWindower(2.0, 0.5)
    w.push(np.zeros((320, 1), np.float32), SR, 0)
    with pytest.raises(StreamError, match="44100 Hz"):
        w.push(np.zeros((882, 1), np.float32), 44100, 20_000_000)
    with pytest.raises(StreamError, match="2 ch"):
        w.push(np.zeros((320, 2), np.float32), SR, 20_000_000)
    w.push(np.zeros((320, 1), np.float32), SR, 20_000_000)  # the stream continues
    assert w.gaps_filled == 0 and w.restarts == 0
    fixed = AudioWindower(2.0, 0.5, sample_rate=48000, channels=1)
    with pytest.raises(StreamError):
        fixed.push(np.zeros((320, 1), np.float32), SR, 0)


# --------------------------------------------------------------------------- IMU

CFG = ImuConfig(num_samples=500, window_seconds=5.0)
SLOPES = np.array([0.5, -1.0, 2.0, 0.1, 0.2, -0.3])
OFFSETS = np.array([0.0, 1.0, 9.8, 0.0, -0.1, 0.05])


def linear(t_s: np.ndarray) -> np.ndarray:
    return OFFSETS + np.outer(t_s, SLOPES)


def expected(newest_s: float) -> np.ndarray:
    """The analytic signal on imu_to_tensor's uniform grid ending at newest_s."""
    n, win = CFG.num_samples, CFG.window_seconds
    grid = newest_s + (np.arange(1, n + 1) - n) * (win / n)
    return linear(grid).T


def irregular_stamps(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """100..400 Hz with jitter: sample spacing drawn from 2.5..10 ms."""
    return 100.0 + np.cumsum(rng.uniform(0.0025, 0.01, int(seconds * 200)))


def test_imu_window_resamples_irregular_and_out_of_order_stamps() -> None:
    rng = np.random.default_rng(1)
    t = irregular_stamps(rng, 7.0)
    order = np.arange(len(t))
    for i in range(10, len(t) - 1, 37):  # swap neighbours: late by one sample (< max_late)
        order[[i, i + 1]] = order[[i + 1, i]]
    w = ImuWindower(CFG.window_seconds, 0.5, max_late_s=0.1)
    windows = []
    for i in order:
        out = w.push(linear(t[i:i + 1])[0], int(round(t[i] * NS)))
        if out is not None:
            windows.append(out)
    assert len(windows) >= 3
    for out in windows:
        newest = out.stamp_ns / NS
        assert out.times.max() == 0.0 and out.times.min() >= -(CFG.window_seconds + 0.1)
        got = imu_to_tensor(out.samples, out.times, CFG).numpy()
        want = expected(newest)
        # linear interpolation of a linear signal is exact (float32 output) where samples
        # surround the grid point; before the oldest sample imu_to_tensor holds its value
        covered = CFG.window_seconds * (np.arange(1, CFG.num_samples + 1) / CFG.num_samples
                                        - 1) >= out.times.min()
        assert covered.mean() > 0.95
        np.testing.assert_allclose(got[:, covered], want[:, covered], rtol=0,
                                   atol=1e-4 * (1 + np.abs(want[:, covered]).max()))
    stamps = [o.stamp_ns for o in windows]
    assert all(b - a >= 0.5 * NS for a, b in zip(stamps, stamps[1:]))
    assert windows[0].stamp_ns / NS - t[0] >= 0.95 * CFG.window_seconds


def test_imu_too_late_refused_gap_restarts() -> None:
    w = ImuWindower(5.0, 0.5, max_late_s=0.1, max_gap_s=0.5)
    t = np.arange(0, 6.0, 0.005)
    outs = [w.push(np.ones(6), int(s * NS)) for s in t]
    assert any(o is not None for o in outs)
    with pytest.raises(StreamError, match="backwards"):
        w.push(np.ones(6), int((t[-1] - 0.3) * NS))
    # a 1-s gap: the buffer restarts and needs ~5 s of new samples before a window
    t2 = t[-1] + 1.0 + np.arange(0, 4.5, 0.005)
    assert all(w.push(np.ones(6), int(s * NS)) is None for s in t2)
    assert w.restarts == 1
    assert w.push(np.ones(6), int((t2[-1] + 0.3) * NS)) is not None


def test_imu_buffer_is_bounded_with_broken_stamps() -> None:
    w = ImuWindower(5.0, 0.5, max_samples=100)
    for _ in range(1000):
        assert w.push(np.zeros(6), 0) is None  # a driver that never stamps
    assert len(w._buf) == 100


# --------------------------------------------------------------------------- mailbox


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_mailbox_keeps_only_the_newest_and_counts_drops() -> None:
    box = Mailbox()
    assert box.put("vision", 1) is True
    assert box.put("vision", 2) is False and box.put("vision", 3) is False
    box.put("audio", "a")
    got = dict(box.take(timeout=0))
    assert got == {"vision": 3, "audio": "a"}
    st = box.stats()
    assert (st["vision"].received, st["vision"].dropped, st["vision"].processed) == (3, 2, 1)
    assert box.take(timeout=0.01) == []


def test_mailbox_max_rate_with_fake_clock() -> None:
    clock = FakeClock()
    box = Mailbox({"vision": 2.0}, clock=clock)  # at most one every 0.5 s
    box.put("vision", 1)
    assert box.take(timeout=0) == [("vision", 1)]
    clock.t = 0.2
    box.put("vision", 2)
    assert box.take(timeout=0) == []  # too soon: stays in the slot
    box.put("vision", 3)
    clock.t = 0.5
    assert box.take(timeout=0) == [("vision", 3)]
    assert box.stats()["vision"].dropped == 1
    box.set_max_rate("vision", 0.0)
    box.put("vision", 4)
    assert box.take(timeout=0) == [("vision", 4)]


def test_mailbox_wakes_the_worker_and_closes() -> None:
    box = Mailbox()
    got: list = []
    worker = threading.Thread(target=lambda: got.extend(box.take(timeout=5)))
    worker.start()
    time.sleep(0.05)
    box.put("imu", 7)
    worker.join(timeout=5)
    assert got == [("imu", 7)]
    worker = threading.Thread(target=lambda: got.append(box.take()))
    worker.start()
    box.close()
    worker.join(timeout=5)
    assert not worker.is_alive() and got[-1] == []
