"""Streaming buffers between sensor messages and the encoders (pure numpy, no ROS).

- ``AudioWindower``: chunks of audio -> the model's 2-s windows every ``hop`` seconds, from a
  ring buffer; values bounded per chunk, the stream's format set by configuration or by the
  majority of recent chunks; small stamp gaps are filled with silence, large ones restart
  the window.
- ``ImuWindower``: single IMU samples with their real stamps -> a window of the last
  ``window`` seconds every ``hop`` seconds (``preprocess.imu_to_tensor`` resamples it onto the
  model's uniform grid), tolerating irregular rates, gaps and late (out-of-order) samples;
  samples beyond a physical range are dropped one by one.
- ``StampGate``: stamps judged against the stream's cadence and the node clock; a new time
  base (a restarted bag or simulator clock) only after several stamps in a row agree, so a
  hostile minority of stamps cannot move it.
- ``Mailbox``: the newest unprocessed input per modality for a worker thread, with drop
  counters and a per-modality maximum rate, so a slow model never builds a backlog.

All stamps are integer nanoseconds. Every input is validated before it touches any state.
Errors are ``StreamError`` (a ``decode.DecodeError``, so a ``ValueError`` with a ``kind``)
whose text is fit for a log line; the caller drops that input and carries on.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from imagebind_ros.decode import BAD_STAMP, OUT_OF_RANGE, STREAM_MISMATCH, DecodeError

NS = 1_000_000_000


class StreamError(DecodeError):
    """An input that does not fit its stream (rate, channels, stamp order, values); ``kind``
    says which kind of fault (``decode.BAD_STAMP``, ``OUT_OF_RANGE``, ``STREAM_MISMATCH``...)."""


# --------------------------------------------------------------------------- stamps


@dataclass
class Admitted:
    """What ``StampGate.admit`` lets through: ``(stamp_ns, item)`` oldest first; ``rebased``
    when they start a new time base (the caller restarts what it buffered)."""

    items: list[tuple[int, Any]]
    rebased: bool = False


class StampGate:
    """Stamps that a hostile minority cannot move.

    A stamp continues the stream when it lies within ``slack_ns`` before the newest accepted
    one (or of ``expect_ns``, where the caller knows the exact next stamp, as audio does) and
    no further ahead than ``steps`` times the stream's recent cadence plus the node time
    elapsed since the last accepted stamp. Anything else (backwards, a jump ahead) is held
    as a candidate time base and only accepted, with the items held, once ``agree`` in a row
    agree with each other (a restarted bag or simulator, a real dropout); a continuing stamp
    discards the candidates, so isolated hostile stamps never move the gate. Stamps <= 0 (never
    set) and stamps more than ``max_ahead_ns`` ahead of the node clock are refused outright.
    """

    def __init__(self, slack_ns: int = 0, agree: int = 3, steps: float = 8.0,
                 max_ahead_ns: int = NS) -> None:
        self.slack_ns, self.agree = int(slack_ns), max(1, int(agree))
        self.steps, self.max_ahead_ns = float(steps), int(max_ahead_ns)
        self.resyncs = 0
        self.reset()

    def reset(self) -> None:
        self.last_ns: int | None = None
        self._last_now: int | None = None
        self._cadence: float | None = None  # EMA of accepted forward steps, ns
        self._held: list[tuple[int, Any, int | None]] = []

    def _follows(self, stamp: int, last: int, last_now: int | None, now: int | None,
                 expect: int | None) -> bool:
        if expect is not None:
            return abs(stamp - expect) <= self.slack_ns
        if stamp < last - self.slack_ns:
            return False
        if self._cadence is None:
            return True
        elapsed = now - last_now if now is not None and last_now is not None else 0
        return stamp - last <= self.steps * self._cadence + max(0, elapsed)

    def admit(self, stamp_ns: int, item: Any = None, now_ns: int | None = None,
              expect_ns: int | None = None) -> Admitted:
        """Let ``item`` (stamped ``stamp_ns``, received at node time ``now_ns``) through, or
        hold it; raises ``StreamError`` (kind ``BAD_STAMP``) for a held or refused stamp."""
        stamp = int(stamp_ns)
        if stamp <= 0:
            raise StreamError(f"stamp {stamp / NS:.3f} s is not set (zero or negative); "
                              "dropped", BAD_STAMP)
        if now_ns is not None and self.max_ahead_ns and stamp - now_ns > self.max_ahead_ns:
            raise StreamError(f"stamp is {(stamp - now_ns) / NS:.3f} s ahead of the node "
                              "clock; dropped", BAD_STAMP)
        if self.last_ns is None or self._follows(stamp, self.last_ns, self._last_now, now_ns,
                                                 expect_ns):
            self._held.clear()
            self._accept(stamp, now_ns)
            return Admitted([(stamp, item)])
        tail = self._held[-1] if self._held else None
        if tail is None or not self._follows(stamp, tail[0], tail[2], now_ns, None):
            self._held.clear()
        self._held.append((stamp, item, now_ns))
        if len(self._held) < self.agree:
            what = ("goes backwards by" if stamp < self.last_ns else "jumps ahead by")
            raise StreamError(f"stamp {what} {abs(stamp - self.last_ns) / 1e6:.1f} ms; held "
                              f"until {self.agree} in a row agree", BAD_STAMP)
        held, self._held = self._held, []
        self._cadence, self.last_ns = None, None
        for s, _, n in held:
            self._accept(s, n)
        self.resyncs += 1
        return Admitted([(s, it) for s, it, _ in held], rebased=True)

    def _accept(self, stamp: int, now: int | None) -> None:
        if self.last_ns is not None and stamp > self.last_ns:
            step = stamp - self.last_ns
            self._cadence = step if self._cadence is None else 0.9 * self._cadence + 0.1 * step
        self.last_ns = stamp if self.last_ns is None else max(stamp, self.last_ns)
        self._last_now = now


# --------------------------------------------------------------------------- audio


@dataclass
class AudioWindow:
    """A window ready for ``preprocess.audio_to_tensor``."""

    samples: np.ndarray  # float32 (frames, channels), oldest first
    sample_rate: int
    stamp_ns: int  # capture time of the LAST sample


class AudioWindower:
    """Audio chunks -> overlapping windows of ``window_s`` every ``hop_s`` (a ring buffer).

    Each chunk is checked in this order before it touches any state: values (a sample beyond
    ``max_abs`` drops the chunk, the rest is clipped to [-1, 1]), format, stamp. The format
    (rate, channels) is the configured one where set, else the majority of the last ``vote``
    chunks: a minority of other chunks is refused, and when another format holds the
    majority the stream switches to it and its window restarts (``format_changes``). Chunk
    stamps name their first sample and the stream's own sample count is the clock: a chunk
    within ``jitter_s`` of where the previous one ended continues it; any other stamp waits
    for ``agree`` chunks in a row to agree (``StampGate``), then a gap up to ``max_gap_s`` is
    filled with zeros (lost packets) and anything else restarts the window.
    """

    def __init__(self, window_s: float = 2.0, hop_s: float = 0.5,
                 sample_rate: int | None = None, channels: int | None = None,
                 jitter_s: float = 0.005, max_gap_s: float = 0.1, agree: int = 3,
                 max_abs: float = 2.0, vote: int = 25, max_ahead_s: float = 1.0) -> None:
        if window_s <= 0 or hop_s <= 0:
            raise ValueError(f"window_s and hop_s must be positive, got {window_s}, {hop_s}")
        self.window_s, self.hop_s = float(window_s), float(hop_s)
        self.jitter_s, self.max_gap_s = float(jitter_s), float(max_gap_s)
        self.max_abs = float(max_abs)
        self.config_rate, self.config_channels = sample_rate, channels
        self.sample_rate, self.channels = sample_rate, channels
        self._votes: collections.deque[tuple[int, int]] = collections.deque(maxlen=vote)
        self._gate = StampGate(int(jitter_s * NS), agree, max_ahead_ns=int(max_ahead_s * NS))
        self.gaps_filled = 0
        self.restarts = 0
        self.format_changes = 0
        self._buf: np.ndarray | None = None
        self._reset_buffer()

    def _reset_buffer(self) -> None:
        self._filled = 0  # valid frames in the ring (<= capacity)
        self._write = 0  # next write position
        self._since_emit = 0  # frames pushed since the last window
        self._next_ns: int | None = None  # expected stamp of the next chunk's first sample

    def _check_format(self, rate: int, channels: int) -> None:
        """Refuse a chunk that is not the stream's format; switch on a new majority."""
        for want, got, unit in ((self.config_rate, rate, "Hz"),
                                (self.config_channels, channels, "ch")):
            if want is not None and got != want:
                raise StreamError(f"audio chunk is {got} {unit}, but this stream is configured "
                                  f"to {want} {unit}; chunk dropped", STREAM_MISMATCH)
        fmt = (rate, channels)
        self._votes.append(fmt)
        if self.sample_rate is None or self.channels is None:
            self.sample_rate, self.channels = fmt
        current = (self.sample_rate, self.channels)
        if fmt == current:
            return
        if 2 * self._votes.count(fmt) <= len(self._votes):
            raise StreamError(f"audio chunk is {rate} Hz x {channels} ch, but this stream is "
                              f"{current[0]} Hz x {current[1]} ch; chunk dropped",
                              STREAM_MISMATCH)
        self.sample_rate, self.channels = fmt
        self._buf = None
        self._reset_buffer()
        self._gate.reset()
        self.format_changes += 1

    def _ensure_buffer(self) -> None:
        if self._buf is None:
            assert self.sample_rate is not None and self.channels is not None
            self.window_frames = int(round(self.window_s * self.sample_rate))
            self.hop_frames = max(1, int(round(self.hop_s * self.sample_rate)))
            self._buf = np.zeros((self.window_frames, self.channels), np.float32)

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

    def push(self, samples: np.ndarray, sample_rate: int, stamp_ns: int,
             now_ns: int | None = None) -> AudioWindow | None:
        """Add a chunk (float32 (frames, channels)) received at node time ``now_ns``; return
        the newest due window, if any. ``StreamError`` says why a chunk was dropped or held."""
        x = np.asarray(samples, np.float32)
        if x.ndim != 2 or x.shape[0] == 0:
            raise StreamError(f"audio chunk must be (frames, channels), got shape {x.shape}")
        peak = float(np.max(np.abs(x)))
        if not peak <= self.max_abs:  # also NaN
            raise StreamError(f"audio chunk peaks at {peak:.3g} (limit {self.max_abs:g} of "
                              "full scale); chunk dropped", OUT_OF_RANGE)
        x = np.clip(x, -1.0, 1.0)
        rate = int(sample_rate)
        self._check_format(rate, x.shape[1])
        self._ensure_buffer()
        admitted = self._gate.admit(stamp_ns, x, now_ns, self._next_ns)
        window = None
        for stamp, chunk in admitted.items:
            window = self._place(chunk, rate, stamp) or window
        return window

    def _place(self, x: np.ndarray, rate: int, stamp_ns: int) -> AudioWindow | None:
        """Append an admitted chunk: continue, fill a short gap, or restart."""
        if self._next_ns is not None:
            delta = (stamp_ns - self._next_ns) / NS
            if delta < -self.jitter_s or delta > self.max_gap_s:
                self._reset_buffer()
                self.restarts += 1
            elif delta > self.jitter_s:
                gap = int(round(delta * rate))
                self._append(np.zeros((gap, x.shape[1]), np.float32))
                self._since_emit += gap
                self._next_ns += gap * NS // rate
                self.gaps_filled += 1
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

    A sample beyond ``max_accel`` (m/s^2) or ``max_gyro`` (rad/s) on any axis is dropped
    alone, before it touches the window. Samples may arrive late by up to ``max_late_s``
    (kept; ``imu_to_tensor`` sorts them); other stamps that do not continue the stream wait
    for ``agree`` in a row to agree (``StampGate``): then a jump forward of more than
    ``max_gap_s`` or a reset clock restarts the buffer, and shorter gaps are interpolated by
    ``imu_to_tensor``. A window is due once the buffer spans ``min_coverage`` of
    ``window_s``. At most ``max_samples`` are held, so broken stamps cannot grow memory.
    """

    def __init__(self, window_s: float = 5.0, hop_s: float = 0.5, max_late_s: float = 0.1,
                 max_gap_s: float = 0.5, min_coverage: float = 0.95, agree: int = 3,
                 max_samples: int = 20000, max_accel: float = 160.0, max_gyro: float = 35.0,
                 max_ahead_s: float = 1.0) -> None:
        if window_s <= 0 or hop_s <= 0:
            raise ValueError(f"window_s and hop_s must be positive, got {window_s}, {hop_s}")
        self.window_ns, self.hop_ns = int(window_s * NS), int(hop_s * NS)
        self.max_late_ns, self.max_gap_ns = int(max_late_s * NS), int(max_gap_s * NS)
        self.min_coverage = float(min_coverage)
        self.limits = np.array([max_accel] * 3 + [max_gyro] * 3, np.float64)
        self._gate = StampGate(self.max_late_ns, agree, max_ahead_ns=int(max_ahead_s * NS))
        self._buf: collections.deque[tuple[int, np.ndarray]] = collections.deque(
            maxlen=max_samples)
        self._last_emit_ns: int | None = None
        self.restarts = 0

    @property
    def newest_ns(self) -> int | None:
        return self._gate.last_ns

    def push(self, sample: np.ndarray, stamp_ns: int, now_ns: int | None = None
             ) -> ImuWindow | None:
        """Add one (6,) sample received at node time ``now_ns``; return the window if one is
        due. ``StreamError`` says why a sample was dropped or held."""
        x = np.asarray(sample, np.float64).reshape(-1)
        if x.shape != (6,):
            raise StreamError(f"IMU sample must have 6 values, got {x.size}")
        if not np.all(np.abs(x) <= self.limits):  # also NaN
            raise StreamError(f"IMU sample {np.array2string(x, precision=3)} is beyond the "
                              f"sensor range (|accel| <= {self.limits[0]:g} m/s^2, |gyro| <= "
                              f"{self.limits[3]:g} rad/s); sample dropped", OUT_OF_RANGE)
        prev = self._gate.last_ns
        admitted = self._gate.admit(stamp_ns, x, now_ns)
        if admitted.rebased:
            self._restart()
            prev = None
        for stamp, s in admitted.items:
            if prev is not None and stamp - prev > self.max_gap_ns:
                self._restart()
            prev = stamp if prev is None else max(prev, stamp)
            self._buf.append((stamp, s))
        newest = self._gate.last_ns
        assert newest is not None
        horizon = newest - self.window_ns - self.max_late_ns
        while self._buf and self._buf[0][0] < horizon:
            self._buf.popleft()
        # arrival order is time order up to max_late_ns: the first sample stands for the
        # oldest (O(1) per sample at 200 Hz instead of a scan of the window)
        if not self._buf or newest - self._buf[0][0] < self.min_coverage * self.window_ns:
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
    displaced: collections.deque = field(default_factory=collections.deque)
    spares: list = field(default_factory=list)


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
    slot is full and allowed by its maximum rate, then empties all such slots at once. The
    last ``spares`` items a taken one displaced stay available (``spares(key)``, newest
    first), so a worker that cannot use the newest (a corrupt frame) falls back to the newest
    usable one instead of losing them all to a flood.
    """

    max_rates: dict[str, float] = field(default_factory=dict)
    spare_count: int = 2
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
                slot.displaced.append(slot.item)
                while len(slot.displaced) > self.spare_count:
                    slot.displaced.popleft()
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
                        s.spares = list(reversed(s.displaced))
                        s.displaced.clear()
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

    def spares(self, key: str) -> list[Any]:
        """The items the last taken item of ``key`` displaced, newest first (once)."""
        with self._cond:
            slot = self._slots.get(key)
            if slot is None:
                return []
            out, slot.spares = slot.spares, []
            return out

    def close(self) -> None:
        """Wake and stop the worker."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def stats(self) -> dict[str, MailboxStats]:
        with self._cond:
            return {k: MailboxStats(s.received, s.dropped, s.processed)
                    for k, s in self._slots.items()}

