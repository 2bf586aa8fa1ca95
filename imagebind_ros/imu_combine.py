"""Gyroscope and accelerometer from separate topics -> IMU samples on one time base.

RealSense cameras (realsense2_camera's default ``unite_imu_method: 0``) publish
``gyro/sample`` and ``accel/sample`` as two ``sensor_msgs/Imu`` streams at different rates,
each with only its own field filled (the other is 0 with a valid covariance). ImageBind's IMU
encoder needs both at every sample, so the combiner takes the stamps of one stream (the
``base``, by default the gyro, the faster one) and linearly interpolates the other stream at
them, as the driver's own ``linear_interpolation`` method does. A base stamp is only used
when the other stream has samples on both sides of it no more than ``max_gap_ns`` apart;
otherwise the sample is dropped and counted, never filled with zeros or held values.

Pure numpy: ``interpolate_at`` is the rule; ``combine_imu`` applies it to whole recordings
(bags) and ``ImuCombiner`` to live messages arriving in any order across the two topics.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Field = Literal["gyro", "accel"]
# Why a base sample was not combined (``ImuCombiner.dropped`` counts them by this key).
BEFORE_OTHER = "before the other stream"  # no other sample at or before it
STALE = "other stream gap"  # the bracketing other samples are more than max_gap_ns apart
OUT_OF_ORDER = "out of order"  # a stamp not after the stream's previous one
OVERFLOW = "other stream silent"  # too many base samples waiting for the other stream


def interpolate_at(t: np.ndarray, other_t: np.ndarray, other_v: np.ndarray, max_gap_ns: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Values of a sampled stream at stamps ``t`` -> (values (N, 3), ok, wait).

    ``other_t`` increasing (int ns), ``other_v`` (M, 3). ``ok``: interpolated from samples
    at or around t no more than ``max_gap_ns`` apart (an exact stamp match needs no
    neighbour). ``wait``: t is after the last other sample (a later one may still come).
    """
    t = np.asarray(t, np.int64)
    other_t = np.asarray(other_t, np.int64)
    values = np.zeros((t.size, 3))
    if other_t.size == 0:
        return values, np.zeros(t.size, bool), np.ones(t.size, bool)
    i = np.searchsorted(other_t, t, side="right") - 1  # last other sample at or before t
    wait = t > other_t[-1]
    exact = (i >= 0) & (other_t[np.maximum(i, 0)] == t)
    inner = (i >= 0) & ~wait & ~exact
    j = np.minimum(i + 1, other_t.size - 1)
    gap = other_t[j] - other_t[np.maximum(i, 0)]
    inner &= gap <= max_gap_ns
    w = np.zeros(t.size)
    w[inner] = (t[inner] - other_t[i[inner]]) / gap[inner]
    lo = other_v[np.maximum(i, 0)]
    values = lo + w[:, None] * (other_v[j] - lo)
    return values, exact | inner, wait


def _stack(base: Field, base_v: np.ndarray, other_v: np.ndarray) -> np.ndarray:
    """[ax, ay, az, gx, gy, gz] whichever stream is the base."""
    return (np.concatenate([other_v, base_v], axis=1) if base == "gyro"
            else np.concatenate([base_v, other_v], axis=1))


def combine_imu(gyro_t: np.ndarray, gyro: np.ndarray, accel_t: np.ndarray, accel: np.ndarray,
                max_gap_ns: int = 50_000_000, base: Field = "gyro"
                ) -> tuple[np.ndarray, np.ndarray]:
    """Two recorded streams (stamps in ns, (N, 3) values, any order) -> (stamps (K,),
    samples (K, 6) [ax, ay, az, gx, gy, gz]) at the base stream's usable stamps."""
    streams = {"gyro": (np.asarray(gyro_t, np.int64), np.asarray(gyro, np.float64)),
               "accel": (np.asarray(accel_t, np.int64), np.asarray(accel, np.float64))}
    (bt, bv), (ot, ov) = streams[base], streams["accel" if base == "gyro" else "gyro"]
    bo, oo = np.argsort(bt, kind="stable"), np.argsort(ot, kind="stable")
    bt, bv, ot, ov = bt[bo], bv[bo], ot[oo], ov[oo]
    values, ok, _ = interpolate_at(bt, ot, ov, max_gap_ns)
    return bt[ok], _stack(base, bv[ok], values[ok])


@dataclass
class ImuCombiner:
    """Live combination of two IMU topics: ``push`` each field's samples as they arrive;
    it returns the combined samples that became complete, oldest first.

    Latency is one sample period of the other stream (a base sample waits for the first
    other sample after it). ``dropped`` counts base samples that could not be combined, by
    reason; samples of either stream whose stamp does not increase are dropped too.
    """

    max_gap_ns: int = 50_000_000
    base: Field = "gyro"
    max_pending: int = 1000
    dropped: collections.Counter = field(default_factory=collections.Counter)

    def __post_init__(self) -> None:
        if self.base not in ("gyro", "accel"):
            raise ValueError(f"base must be 'gyro' or 'accel', got {self.base!r}")
        self._pending: collections.deque[tuple[int, np.ndarray]] = collections.deque()
        self._other: list[tuple[int, np.ndarray]] = []
        self._last = {"gyro": None, "accel": None}

    def push(self, which: Field, value: np.ndarray, stamp_ns: int
             ) -> list[tuple[np.ndarray, int]]:
        """One sample of ``which`` stream -> newly complete [(sample (6,), stamp ns)]."""
        if which not in ("gyro", "accel"):
            raise ValueError(f"which must be 'gyro' or 'accel', got {which!r}")
        v = np.asarray(value, np.float64).reshape(3)
        last = self._last[which]
        if last is not None and stamp_ns <= last:
            self.dropped[OUT_OF_ORDER] += 1
            return []
        self._last[which] = int(stamp_ns)
        if which == self.base:
            self._pending.append((int(stamp_ns), v))
            while len(self._pending) > self.max_pending:
                self._pending.popleft()
                self.dropped[OVERFLOW] += 1
        else:
            self._other.append((int(stamp_ns), v))
        return self._emit()

    def _emit(self) -> list[tuple[np.ndarray, int]]:
        out: list[tuple[np.ndarray, int]] = []
        if self._pending and self._other:
            bt = np.array([t for t, _ in self._pending], np.int64)
            ot = np.array([t for t, _ in self._other], np.int64)
            values, ok, wait = interpolate_at(bt, ot, np.stack([v for _, v in self._other]),
                                              self.max_gap_ns)
            ready = int(np.argmax(wait)) if wait.any() else bt.size  # stamps increase
            for k in range(ready):
                t, v = self._pending.popleft()
                if ok[k]:
                    out.append((_stack(self.base, v[None], values[k][None])[0], t))
                else:
                    self.dropped[BEFORE_OTHER if t < ot[0] else STALE] += 1
        self._trim()
        return out

    def _trim(self) -> None:
        """Forget other-stream samples no later base stamp can need (those before the one at
        or before the oldest waiting, else the last seen, base stamp), and beyond
        ``max_pending`` of them whatever happens (a base stream that went silent)."""
        ref = self._pending[0][0] if self._pending else self._last[self.base]
        keep_from = len(self._other) - self.max_pending
        if ref is not None:
            ot = np.array([t for t, _ in self._other], np.int64)
            keep_from = max(keep_from, int(np.searchsorted(ot, ref, "right")) - 1)
        del self._other[: max(0, keep_from)]
