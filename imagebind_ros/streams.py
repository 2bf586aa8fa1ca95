"""Streaming buffers between sensor messages and the encoders (pure numpy, no ROS).

- ``AudioWindower``: chunks of audio -> the model's 2-s windows every ``hop`` seconds, from a
  ring buffer; the stream's sample rate and channel count are fixed by the first chunk (or
  by the caller) and chunks that differ are refused; small stamp gaps are filled with
  silence, large ones restart the window.
- ``ImuWindower``: single IMU samples with their real stamps -> a window of the last
  ``window`` seconds every ``hop`` seconds (``preprocess.imu_to_tensor`` resamples it onto the
  model's uniform grid), tolerating irregular rates, gaps and late (out-of-order) samples.
- ``StampGate``: refuses stamps that go backwards, but accepts a new time base after a run of
  them (a restarted bag or simulator clock) instead of refusing forever.
- ``Mailbox``: the newest unprocessed input per modality for a worker thread, with drop
  counters and a per-modality maximum rate, so a slow model never builds a backlog.

All stamps are integer nanoseconds. Errors are ``StreamError`` (a ``ValueError``) whose text
is fit for a log line; the caller drops that input and carries on.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

NS = 1_000_000_000


class StreamError(ValueError):
    """An input that does not fit its stream (rate, channels, stamp order)."""


# --------------------------------------------------------------------------- stamps


class StampGate:
    """Accept stamps that do not go backwards (equal is allowed, ``slack_ns`` of jitter too).

    After ``resync_after`` consecutive backward stamps the gate assumes the clock restarted
    (a looping bag, a simulator reset), accepts that stamp and continues from it.
    """

    def __init__(self, slack_ns: int = 0, resync_after: int = 10) -> None:
        self.slack_ns = int(slack_ns)
        self.resync_after = max(1, int(resync_after))
        self.last_ns: int | None = None
        self._backwards = 0
        self.resyncs = 0

    def check(self, stamp_ns: int) -> bool:
        """True if the stamp is accepted; False means the clock was reset (accepted too).

        Raises ``StreamError`` for a backward stamp that is dropped.
        """
        if self.last_ns is None or stamp_ns >= self.last_ns - self.slack_ns:
            self._backwards = 0
            self.last_ns = stamp_ns if self.last_ns is None else max(stamp_ns, self.last_ns)
            return True
        self._backwards += 1
        if self._backwards >= self.resync_after:
            self._backwards = 0
            self.last_ns = stamp_ns
            self.resyncs += 1
            return False
        raise StreamError(f"stamp goes backwards by {(self.last_ns - stamp_ns) / 1e6:.3f} ms "
                          f"({stamp_ns / NS:.6f} s after {self.last_ns / NS:.6f} s)")

    def reset(self) -> None:
        self.last_ns, self._backwards = None, 0


# --------------------------------------------------------------------------- audio


@dataclass
class AudioWindow:
    """A window ready for ``preprocess.audio_to_tensor``."""

    samples: np.ndarray  # float32 (frames, channels), oldest first
    sample_rate: int
    stamp_ns: int  # capture time of the LAST sample


class AudioWindower:
    """Audio chunks -> overlapping windows of ``window_s`` every ``hop_s`` (a ring buffer).

    Chunk stamps name their first sample. The stream's own sample count is the clock: a chunk
    whose stamp is within ``jitter_s`` of where the previous chunk ended continues it; up to
    ``max_gap_s`` later, the gap is filled with zeros (lost packets); later still, the
    buffer restarts (no window spans a long silence that never happened); earlier (overlap,
    time going backwards) the chunk is refused, until ``resync_after`` such chunks in a row
    say the clock was reset.
    """

    def __init__(self, window_s: float = 2.0, hop_s: float = 0.5,
                 sample_rate: int | None = None, channels: int | None = None,
                 jitter_s: float = 0.005, max_gap_s: float = 0.1,
                 resync_after: int = 10) -> None:
        if window_s <= 0 or hop_s <= 0:
            raise ValueError(f"window_s and hop_s must be positive, got {window_s}, {hop_s}")
        self.window_s, self.hop_s = float(window_s), float(hop_s)
        self.jitter_s, self.max_gap_s = float(jitter_s), float(max_gap_s)
        self.resync_after = int(resync_after)
        self.sample_rate, self.channels = sample_rate, channels
        self.gaps_filled = 0
        self.restarts = 0
        self._buf: np.ndarray | None = None
        self._backwards = 0
        self._reset_buffer()

    def _reset_buffer(self) -> None:
        self._filled = 0  # valid frames in the ring (<= capacity)
        self._write = 0  # next write position
        self._since_emit = 0  # frames pushed since the last window
        self._next_ns: int | None = None  # expected stamp of the next chunk's first sample

    def _ensure(self, rate: int, channels: int) -> None:
        if self.sample_rate is None:
            self.sample_rate = rate
        if self.channels is None:
            self.channels = channels
        if rate != self.sample_rate or channels != self.channels:
            raise StreamError(f"audio chunk is {rate} Hz x {channels} ch, but this stream is "
                              f"{self.sample_rate} Hz x {self.channels} ch; chunk dropped")
        if self._buf is None:
            self.window_frames = int(round(self.window_s * rate))
            self.hop_frames = max(1, int(round(self.hop_s * rate)))
            self._buf = np.zeros((self.window_frames, channels), np.float32)

    def _append(self, x: np.ndarray) -> None:
        assert self._buf is not None
        cap = self._buf.shape[0]
        x = x[-cap:]
        n = x.shape[0]
        first = min(n, cap - self._write)
        self._buf[self._write:self._write + first] = x[:first]
        self._buf[:n - first] = x[first:]
        self._write = (self._write + n) % cap
        self._filled = min(cap, self._filled + n)

    def push(self, samples: np.ndarray, sample_rate: int, stamp_ns: int) -> AudioWindow | None:
        """Add a chunk (float32 (frames, channels)); return the newest due window, if any."""
        x = np.asarray(samples, np.float32)
        if x.ndim != 2 or x.shape[0] == 0:
            raise StreamError(f"audio chunk must be (frames, channels), got shape {x.shape}")
        self._ensure(int(sample_rate), x.shape[1])
        rate = int(sample_rate)
        if self._next_ns is not None:
            delta = (stamp_ns - self._next_ns) / NS
            if delta < -self.jitter_s:
                self._backwards += 1
                if self._backwards < self.resync_after:
                    raise StreamError(f"audio chunk stamp goes backwards or overlaps the "
                                      f"previous chunk by {-delta * 1e3:.1f} ms; chunk dropped")
                self._reset_buffer()
                self.restarts += 1
            elif delta > self.max_gap_s:
                self._reset_buffer()
                self.restarts += 1
            elif delta > self.jitter_s:
                gap = int(round(delta * rate))
                self._append(np.zeros((gap, x.shape[1]), np.float32))
                self._since_emit += gap
                self._next_ns += gap * NS // rate
                self.gaps_filled += 1
        self._backwards = 0
        start = stamp_ns if self._next_ns is None else self._next_ns
        self._append(x)
        self._since_emit += x.shape[0]
        self._next_ns = start + x.shape[0] * NS // rate
        if self._filled < self.window_frames or self._since_emit < self.hop_frames:
            return None
        self._since_emit = 0
        assert self._buf is not None
        ordered = np.roll(self._buf, -self._write, axis=0)
        last_ns = start + (x.shape[0] - 1) * NS // rate
        return AudioWindow(ordered, rate, last_ns)


# --------------------------------------------------------------------------- IMU


@dataclass
class ImuWindow:
    """A window ready for ``preprocess.imu_to_tensor(samples, times, cfg)``."""

    samples: np.ndarray  # float64 (N, 6), arrival order
    times: np.ndarray  # float64 (N,) seconds relative to stamp_ns (all <= 0)
    stamp_ns: int  # the newest sample's stamp


class ImuWindower:
    """IMU samples -> the last ``window_s`` seconds every ``hop_s`` seconds of stamp time.

    Samples may arrive late by up to ``max_late_s`` (kept; ``imu_to_tensor`` sorts them);
    later than that they are refused as stamps going backwards (``resync_after`` in a row
    restart the buffer: a reset clock). A jump forward of more than ``max_gap_s`` restarts
    the buffer, shorter gaps are interpolated by ``imu_to_tensor``. A window is due once the
    buffer spans ``min_coverage`` of ``window_s``. At most ``max_samples`` are held, so
    broken stamps (all equal, say) cannot grow memory.
    """

    def __init__(self, window_s: float = 5.0, hop_s: float = 0.5, max_late_s: float = 0.1,
                 max_gap_s: float = 0.5, min_coverage: float = 0.95, resync_after: int = 20,
                 max_samples: int = 20000) -> None:
        if window_s <= 0 or hop_s <= 0:
            raise ValueError(f"window_s and hop_s must be positive, got {window_s}, {hop_s}")
        self.window_ns, self.hop_ns = int(window_s * NS), int(hop_s * NS)
        self.max_late_ns, self.max_gap_ns = int(max_late_s * NS), int(max_gap_s * NS)
        self.min_coverage = float(min_coverage)
        self._gate = StampGate(self.max_late_ns, resync_after)
        self._buf: collections.deque[tuple[int, np.ndarray]] = collections.deque(
            maxlen=max_samples)
        self._last_emit_ns: int | None = None
        self.restarts = 0

    @property
    def newest_ns(self) -> int | None:
        return self._gate.last_ns

    def push(self, sample: np.ndarray, stamp_ns: int) -> ImuWindow | None:
        """Add one (6,) sample; return the window if one is due."""
        prev = self._gate.last_ns
        if not self._gate.check(stamp_ns):
            self._restart()
        elif prev is not None and stamp_ns - prev > self.max_gap_ns:
            self._restart()
        self._buf.append((stamp_ns, np.asarray(sample, np.float64)))
        newest = self._gate.last_ns
        assert newest is not None
        horizon = newest - self.window_ns - self.max_late_ns
        while self._buf and self._buf[0][0] < horizon:
            self._buf.popleft()
        # arrival order is time order up to max_late_ns: the first sample stands for the
        # oldest (O(1) per sample at 200 Hz instead of a scan of the window)
        if newest - self._buf[0][0] < self.min_coverage * self.window_ns:
            return None
        if self._last_emit_ns is not None and newest - self._last_emit_ns < self.hop_ns:
            return None
        self._last_emit_ns = newest
        stamps = np.array([t for t, _ in self._buf], np.int64)
        keep = stamps >= newest - self.window_ns - self.max_late_ns
        samples = np.stack([s for _, s in self._buf])[keep]
        return ImuWindow(samples, (stamps[keep] - newest) / NS, newest)

    def _restart(self) -> None:
        self._buf.clear()
        self._last_emit_ns = None
        self.restarts += 1


# --------------------------------------------------------------------------- worker mailbox


@dataclass
class _Slot:
    item: Any = None
    full: bool = False
    min_interval: float = 0.0
    last_taken: float = -float("inf")
    received: int = 0
    dropped: int = 0
    processed: int = 0


@dataclass
class MailboxStats:
    """Counters of one key: inputs received, replaced before processing, processed."""

    received: int
    dropped: int
    processed: int


@dataclass
class Mailbox:
    """Newest-unprocessed-input-only slots for a worker thread.

    ``put`` (from subscription callbacks) never blocks: an unprocessed older item in the
    slot is replaced and counted as dropped. ``take`` (the worker) waits until at least one
    slot is full and allowed by its maximum rate, then empties all such slots at once.
    """

    max_rates: dict[str, float] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic
    _slots: dict[str, _Slot] = field(default_factory=dict)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _closed: bool = False

    def __post_init__(self) -> None:
        for key, hz in self.max_rates.items():
            self.set_max_rate(key, hz)

    def set_max_rate(self, key: str, hz: float) -> None:
        """At most ``hz`` items of ``key`` per second (0 = no limit)."""
        with self._cond:
            self._slot(key).min_interval = 1.0 / hz if hz > 0 else 0.0  # applies at once
            self._cond.notify_all()

    def _slot(self, key: str) -> _Slot:
        if key not in self._slots:
            self._slots[key] = _Slot()
        return self._slots[key]

    def put(self, key: str, item: Any) -> bool:
        """Store the newest item for ``key``; False if it replaced an unprocessed one."""
        with self._cond:
            slot = self._slot(key)
            slot.received += 1
            replaced = slot.full
            if replaced:
                slot.dropped += 1
            slot.item, slot.full = item, True
            self._cond.notify_all()
            return not replaced

    def take(self, timeout: float | None = None) -> list[tuple[str, Any]]:
        """Wait for due items; return ``[(key, item), ...]`` ([] on timeout or close)."""
        deadline = None if timeout is None else self.clock() + timeout
        with self._cond:
            while not self._closed:
                now = self.clock()
                due = [k for k, s in self._slots.items()
                       if s.full and s.last_taken + s.min_interval <= now]
                if due:
                    out = []
                    for k in due:
                        s = self._slots[k]
                        out.append((k, s.item))
                        s.item, s.full = None, False
                        s.processed += 1
                        s.last_taken = now
                    return out
                waits = [s.last_taken + s.min_interval - now
                         for s in self._slots.values() if s.full]
                if deadline is not None:
                    waits.append(deadline - now)
                wait = min(waits) if waits else None
                if wait is not None and wait <= 0:
                    return []
                self._cond.wait(wait)
            return []

    def close(self) -> None:
        """Wake and stop the worker."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def stats(self) -> dict[str, MailboxStats]:
        with self._cond:
            return {k: MailboxStats(s.received, s.dropped, s.processed)
                    for k, s in self._slots.items()}

