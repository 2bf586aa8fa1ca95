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
from imagebind_ros import decode as dec
from imagebind_ros.streams import (NS, AudioWindower, ImuWindower, Mailbox, StampGate,
                                   StreamError)

SR = 16000


# --------------------------------------------------------------------------- stamp gate


def test_stamp_gate_refuses_backwards_then_rebases_on_agreement() -> None:
    g = StampGate(slack_ns=10, agree=3)
    for s in (1000, 1000, 995):  # equal / within slack
        assert g.admit(s, s).items == [(s, s)]
    assert g.last_ns == 1000
    with pytest.raises(StreamError, match="backwards") as e:
        g.admit(900)
    assert e.value.kind == dec.BAD_STAMP
    assert g.admit(1100).items and g.last_ns == 1100  # a good stamp clears the candidates
    for s in (50, 60):
        with pytest.raises(StreamError, match="held"):
            g.admit(s, f"item{s}")
    got = g.admit(70, "item70")  # third in a row: the clock restarted; nothing is lost
    assert got.rebased and got.items == [(50, "item50"), (60, "item60"), (70, "item70")]
    assert g.last_ns == 70 and g.resyncs == 1 and g.admit(80).items == [(80, None)]


@pytest.mark.parametrize("bad", [0, -5 * NS, 10**9 * NS, "-10s", "+0.4s"])
def test_stamp_gate_cannot_be_moved_by_a_hostile_minority(bad) -> None:
    """Every 4th stamp hostile (unset, far future, 10 s back, 0.4 s ahead): every valid one
    is still accepted and the gate stays on the valid timeline."""
    g = StampGate(slack_ns=0, agree=3)
    valid = [100 * NS + i * 5_000_000 for i in range(400)]  # 200 Hz
    accepted = []
    for i, s in enumerate(valid):
        now = s + 1_000_000
        if i % 4 == 3:
            h = {"-10s": s - 10 * NS, "+0.4s": s + 400_000_000}.get(bad, bad)
            with pytest.raises(StreamError) as e:
                g.admit(h, None, now)
            assert e.value.kind == dec.BAD_STAMP
        accepted += [t for t, _ in g.admit(s, None, now).items]
    assert accepted == valid and g.last_ns == valid[-1] and g.resyncs == 0


def test_stamp_gate_accepts_a_pause_the_node_clock_saw() -> None:
    """A sensor that stops for 2 s continues at once: the node clock moved as much."""
    g = StampGate(agree=3)
    for i in range(20):
        g.admit(NS + i * 10_000_000, None, NS + i * 10_000_000)
    resume = NS + 19 * 10_000_000 + 2 * NS
    assert g.admit(resume, "x", resume).items == [(resume, "x")]
    with pytest.raises(StreamError, match="ahead of the node clock"):
        g.admit(resume + 5 * NS, None, resume + 10_000_000)


# --------------------------------------------------------------------------- audio


def chunks(signal: np.ndarray, size: int, t0_ns: int = 5 * NS):
    """(chunk, stamp of its first sample) over a (frames, ch) signal."""
    for start in range(0, len(signal) - size + 1, size):
        yield signal[start:start + size], t0_ns + start * NS // SR


def push(w: AudioWindower | ImuWindower, *args):
    """``w.push``; None for an input held by the stamp gate until others agree."""
    try:
        return w.push(*args)
    except StreamError as e:
        assert "held" in str(e), e
        return None


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
            out = push(w, c, SR, stamp)
            if out is not None:
                last, end = out, (i + 1) * 320
    ref = sig.copy()
    ref[50 * 320:53 * 320] = 0
    assert w.gaps_filled == 1 and last is not None and end - 2 * SR < 50 * 320
    np.testing.assert_array_equal(last.samples, ref[end - 2 * SR:end])
    # now a 0.5-s gap: the window restarts and needs 2 s of new audio
    stamp_after = parts[-1][1] + 320 * NS // SR + NS // 2
    outs = [push(w, sig[:320], SR, stamp_after + k * 320 * NS // SR) for k in range(99)]
    assert all(o is None for o in outs) and w.restarts == 1  # 99 chunks = 1.98 s
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


def test_audio_rate_or_channel_change_of_a_minority_is_refused() -> None:
    w = AudioWindower(2.0, 0.5)
    w.push(np.zeros((320, 1), np.float32), SR, NS)
    with pytest.raises(StreamError, match="44100 Hz"):
        w.push(np.zeros((882, 1), np.float32), 44100, NS + 20_000_000)
    with pytest.raises(StreamError, match="2 ch"):
        w.push(np.zeros((320, 2), np.float32), SR, NS + 20_000_000)
    w.push(np.zeros((320, 1), np.float32), SR, NS + 20_000_000)  # the stream continues
    assert w.gaps_filled == 0 and w.restarts == 0 and w.format_changes == 0
    fixed = AudioWindower(2.0, 0.5, sample_rate=48000, channels=1)
    for k in range(30):  # configured: never switches, whatever the majority
        with pytest.raises(StreamError, match="configured") as e:
            fixed.push(np.zeros((320, 1), np.float32), SR, NS + k * 20_000_000)
        assert e.value.kind == dec.STREAM_MISMATCH


def test_audio_format_follows_the_majority_not_the_first_chunk() -> None:
    """Five chunks at 8 kHz stereo, then 16 kHz mono: the stream switches once 16 kHz holds
    the majority of the recent chunks (6 of 11) and its windows are the 16 kHz signal."""
    w = AudioWindower(2.0, 0.5, vote=25)
    for k in range(5):
        w.push(np.full((160, 2), 0.5, np.float32), 8000, NS + k * 20_000_000)
    sig = ramp(3 * SR)
    refused, out, end = 0, None, 0
    for i, (c, stamp) in enumerate(chunks(sig, 320, t0_ns=2 * NS)):
        try:
            new = w.push(c, SR, stamp)
        except StreamError as e:
            assert e.kind == dec.STREAM_MISMATCH
            refused += 1
            continue
        if new is not None:
            out, end = new, (i + 1) * 320
    assert refused == 5 and w.format_changes == 1 and (w.sample_rate, w.channels) == (SR, 1)
    assert out is not None and out.sample_rate == SR
    np.testing.assert_array_equal(out.samples, sig[end - 2 * SR:end])


def test_audio_absurd_values_drop_one_chunk_and_clip_the_rest() -> None:
    """A chunk with 1e30 (finite F32LE) is dropped alone; 1.5 is clipped to 1; the windows
    are the clean signal with that chunk's place left as a short gap of silence."""
    sig = ramp(3 * SR)
    sig[100 * 320 + 7] = 1.5
    w = AudioWindower(2.0, 0.5, max_gap_s=0.1)
    out, end = None, 0
    for i, (c, stamp) in enumerate(chunks(sig, 320)):
        if i == 60:
            bad = c.copy()
            bad[3] = 1e30
            with pytest.raises(StreamError, match="peaks") as e:
                w.push(bad, SR, stamp)
            assert e.value.kind == dec.OUT_OF_RANGE
            continue
        new = push(w, c, SR, stamp)
        if new is not None:
            out, end = new, (i + 1) * 320
    ref = np.clip(sig, -1, 1)
    ref[60 * 320:61 * 320] = 0
    assert out is not None and end - 2 * SR < 60 * 320 and w.gaps_filled == 1
    np.testing.assert_array_equal(out.samples, ref[end - 2 * SR:end])


@pytest.mark.parametrize("bad", [0, 10**9 * NS, "-10s", "+0.09s"])
def test_audio_hostile_stamps_neither_black_out_nor_stamp_the_stream(bad) -> None:
    """Every 5th message a copy of a valid chunk with a hostile stamp: every window of the
    valid stream still comes out, exact, with the valid stream's stamps."""
    sig = ramp(4 * SR)
    w = AudioWindower(2.0, 0.5)
    ref_w = AudioWindower(2.0, 0.5)
    got, want = [], []
    for i, (c, stamp) in enumerate(chunks(sig, 320)):
        now = stamp + 20_000_000
        if i % 5 == 4:
            h = {"-10s": stamp - 10 * NS, "+0.09s": stamp + 90_000_000}.get(bad, bad)
            with pytest.raises(StreamError):
                w.push(c, SR, h, now)
        for win, out in ((w, got), (ref_w, want)):
            new = win.push(c, SR, stamp, now)
            if new is not None:
                out.append(new)
    assert len(got) == len(want) >= 4 and w.restarts == 0 and w.gaps_filled == 0
    for a, b in zip(got, want):
        assert a.stamp_ns == b.stamp_ns
        np.testing.assert_array_equal(a.samples, b.samples)


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
    return 10.0 + np.cumsum(rng.uniform(0.0025, 0.01, int(seconds * 200)))


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
    t = np.arange(1.0, 7.0, 0.005)
    outs = [w.push(np.ones(6), int(s * NS)) for s in t]
    assert any(o is not None for o in outs)
    with pytest.raises(StreamError, match="backwards"):
        w.push(np.ones(6), int((t[-1] - 0.3) * NS))
    # a 1-s gap: the buffer restarts and needs ~5 s of new samples before a window
    t2 = t[-1] + 1.0 + np.arange(0, 4.5, 0.005)
    assert all(push(w, np.ones(6), int(s * NS)) is None for s in t2)
    assert w.restarts == 1
    t3 = t2[-1] + np.arange(0.005, 0.3, 0.005)
    assert any(w.push(np.ones(6), int(s * NS)) is not None for s in t3)


def test_imu_buffer_is_bounded_with_broken_stamps() -> None:
    w = ImuWindower(5.0, 0.5, max_samples=100)
    for _ in range(1000):
        assert w.push(np.zeros(6), NS) is None  # a driver that stamps every sample alike
    with pytest.raises(StreamError, match="not set") as e:
        w.push(np.zeros(6), 0)  # one that never stamps
    assert e.value.kind == dec.BAD_STAMP
    assert len(w._buf) == 100


def imu_windows(w: ImuWindower, t: np.ndarray, hostile=None) -> list:
    """Push the linear signal at stamps ``t``; ``hostile(i, stamp, sample)`` may push a bad
    message before sample i (its StreamError is expected)."""
    out = []
    for i, s in enumerate(t):
        stamp = int(round(s * NS))
        if hostile is not None:
            hostile(i, stamp, linear(t[i:i + 1])[0])
        new = w.push(linear(t[i:i + 1])[0], stamp, stamp + 1_000_000)
        if new is not None:
            out.append(new)
    return out


def test_imu_absurd_value_drops_the_sample_not_the_window() -> None:
    """1e30 in one sample of fifty: that sample is dropped alone and every window is the
    clean stream's (same stamps, same samples)."""
    t = 1.0 + np.arange(0, 8.0, 0.005)
    ref = imu_windows(ImuWindower(5.0, 0.5), t)
    w = ImuWindower(5.0, 0.5, max_accel=160.0, max_gyro=35.0)
    got = []
    for i, s in enumerate(t):
        x = linear(t[i:i + 1])[0]
        if i % 50 == 25:
            bad = x.copy()
            bad[i % 6] = 1e30
            with pytest.raises(StreamError, match="beyond the sensor range") as e:
                w.push(bad, int(round(s * NS)))
            assert e.value.kind == dec.OUT_OF_RANGE
            continue
        new = w.push(x, int(round(s * NS)))
        if new is not None:
            got.append(new)
    assert len(got) == len(ref) >= 5
    for a, b in zip(got, ref):
        assert a.stamp_ns == b.stamp_ns and np.isfinite(a.samples).all()
        assert len(a.samples) == len(b.samples) - np.sum(np.isin(
            b.times, (t[25::50] * NS - b.stamp_ns).round() / NS))


@pytest.mark.parametrize("bad", [0, 10**9 * NS, "-10s", "+0.4s"])
def test_imu_hostile_stamps_do_not_black_out_the_stream(bad) -> None:
    """Well-formed samples with hostile stamps, one per four valid ones: the valid stream
    keeps every window, with its own stamps."""
    t = 1.0 + np.arange(0, 8.0, 0.005)
    ref = imu_windows(ImuWindower(5.0, 0.5), t)

    def hostile(i: int, stamp: int, x: np.ndarray) -> None:
        if i % 4 == 3:
            h = {"-10s": stamp - 10 * NS, "+0.4s": stamp + 400_000_000}.get(bad, bad)
            with pytest.raises(StreamError):
                w.push(x, h, stamp)
    w = ImuWindower(5.0, 0.5)
    got = imu_windows(w, t, hostile)
    assert [o.stamp_ns for o in got] == [o.stamp_ns for o in ref] and len(ref) >= 5
    assert w.restarts == 0


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


def test_mailbox_keeps_what_the_taken_item_displaced_for_a_fallback() -> None:
    """A flood of unusable items after a good one: the worker gets the newest and, if it
    cannot use it, the two it displaced (newest first), once; older ones are gone."""
    box = Mailbox(spare_count=2)
    for item in ("good", "bad1", "bad2", "bad3"):
        box.put("vision", item)
    assert box.take(timeout=0) == [("vision", "bad3")]
    assert box.spares("vision") == ["bad2", "bad1"] and box.spares("vision") == []
    box.put("vision", "good2")
    box.put("vision", "bad4")
    assert box.take(timeout=0) == [("vision", "bad4")]
    assert box.spares("vision") == ["good2"] and box.spares("audio") == []
    assert box.stats()["vision"].dropped == 4
