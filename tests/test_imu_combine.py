"""Separate gyro and accel topics (RealSense's default) onto one time base, with
hand-computed cases: linear interpolation of the other stream at the base stamps, dropped
(counted) samples where that is not possible, never zeros."""

from __future__ import annotations

import numpy as np
import pytest

from imagebind_ros import imu_combine as ic

MS = 1_000_000


def test_interpolates_accel_at_gyro_stamps() -> None:
    c = ic.ImuCombiner(max_gap_ns=20 * MS)
    assert c.push("accel", [0.0, 0.0, 9.0], 0) == []
    assert c.push("gyro", [1.0, 2.0, 3.0], 5 * MS) == []  # waits for the next accel sample
    out = c.push("accel", [1.0, -2.0, 10.0], 10 * MS)
    assert len(out) == 1
    sample, t = out[0]
    assert t == 5 * MS
    # halfway: (0 + 1) / 2, (0 - 2) / 2, (9 + 10) / 2; gyro as measured
    np.testing.assert_allclose(sample, [0.5, -1.0, 9.5, 1.0, 2.0, 3.0])
    # a quarter of the way from 10 to 30 ms
    c.push("accel", [5.0, 2.0, 10.0], 30 * MS)
    (sample, t), = c.push("gyro", [0.0, 0.0, 0.0], 15 * MS)
    assert t == 15 * MS
    np.testing.assert_allclose(sample[:3], [2.0, -1.0, 10.0])


def test_exact_stamp_needs_no_neighbour() -> None:
    c = ic.ImuCombiner()
    c.push("accel", [1.0, 2.0, 3.0], 100)
    (sample, t), = c.push("gyro", [4.0, 5.0, 6.0], 100)
    assert t == 100
    np.testing.assert_array_equal(sample, [1, 2, 3, 4, 5, 6])


def test_unusable_samples_are_dropped_and_counted() -> None:
    c = ic.ImuCombiner(max_gap_ns=10 * MS)
    c.push("accel", [0, 0, 9.8], 10 * MS)
    assert c.push("gyro", [1, 1, 1], 5 * MS) == []  # before any accel sample
    assert c.dropped[ic.BEFORE_OTHER] == 1
    c.push("gyro", [1, 1, 1], 20 * MS)
    assert c.push("accel", [0, 0, 9.8], 40 * MS) == []  # 30 ms gap > 10 ms
    assert c.dropped[ic.STALE] == 1
    assert c.push("gyro", [1, 1, 1], 20 * MS) == []  # not after the previous gyro stamp
    assert c.dropped[ic.OUT_OF_ORDER] == 1


def test_a_silent_other_stream_is_bounded() -> None:
    c = ic.ImuCombiner(max_pending=5)
    for k in range(12):
        assert c.push("gyro", [0, 0, 1], k * MS) == []
    assert c.dropped[ic.OVERFLOW] == 7
    for k in range(100):
        c.push("accel", [0, 0, 9.8], (100 + k) * MS)
    assert len(c._other) <= 5  # bounded, whatever the base stream does


def test_accel_base_and_interleaved_arrival() -> None:
    """base="accel": gyro interpolated at accel stamps; arrival order across the topics
    does not matter as long as each stream's stamps increase."""
    c = ic.ImuCombiner(base="accel", max_gap_ns=50 * MS)
    assert c.push("accel", [0, 0, 9.0], 10 * MS) == []
    c.push("gyro", [0.0, 0.0, 0.0], 0)
    (sample, t), = c.push("gyro", [2.0, 4.0, 6.0], 20 * MS)
    assert t == 10 * MS
    np.testing.assert_allclose(sample, [0, 0, 9.0, 1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="base"):
        ic.ImuCombiner(base="mag")  # type: ignore[arg-type]


def test_batch_equals_live_and_never_zero() -> None:
    """combine_imu (bags) and ImuCombiner (live) agree on realistic RealSense rates (gyro
    200 Hz, accel 63 Hz with jitter), and no combined sample has a zero field."""
    rng = np.random.default_rng(1)
    gt = np.cumsum(rng.uniform(4.5, 5.5, 400)).round().astype(np.int64) * MS // 1
    at = np.cumsum(rng.uniform(14, 18, 130)).round().astype(np.int64) * MS
    gyro = rng.normal(0, 0.1, (gt.size, 3))
    accel = rng.normal([0, -9.8, 0], 0.2, (at.size, 3))
    bt, bs = ic.combine_imu(gt, gyro, at, accel, max_gap_ns=25 * MS)
    c = ic.ImuCombiner(max_gap_ns=25 * MS)
    events = sorted([(t, "gyro", v) for t, v in zip(gt, gyro)]
                    + [(t + 3 * MS, "accel", v) for t, v in zip(at, accel)],  # late delivery
                    key=lambda e: e[0])
    live = []
    for arrive, which, v in events:
        stamp = arrive - 3 * MS if which == "accel" else arrive
        live += c.push(which, v, int(stamp))
    lt = np.array([t for _, t in live])
    ls = np.stack([s for s, _ in live])
    n = lt.size  # live lags by one accel period at the end
    assert n >= bt.size - 5
    np.testing.assert_array_equal(lt, bt[:n])
    np.testing.assert_allclose(ls, bs[:n])
    assert np.all(np.linalg.norm(bs[:, :3], axis=1) > 5)  # gravity, never zeros
    # each combined accel lies between its two bracketing accel samples
    i = np.searchsorted(at, bt, side="right") - 1
    lo, hi = np.minimum(accel[i], accel[i + 1]), np.maximum(accel[i], accel[i + 1])
    assert np.all((bs[:, :3] >= lo - 1e-12) & (bs[:, :3] <= hi + 1e-12))
