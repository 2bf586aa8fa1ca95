"""A node's worker thread, owned clearly: started by the node, stopped and joined when the
node is destroyed, and a join that times out reported instead of silently abandoned.

It also tells a bug from bad input: exceptions the node does not classify as bad input
count as failures; after ``max_failures`` in a row the node logs ONE error with the
traceback (a rate-limited warning per input would hide a broken node forever), and
``health()`` turns the /diagnostics status to ERROR until an input succeeds again.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from typing import Any

from diagnostic_msgs.msg import DiagnosticStatus

DEFAULT_MAX_FAILURES = 10


class Worker:
    """One thread running ``target`` until ``stopping``; failure accounting for its inputs."""

    def __init__(self, name: str, target: Callable[[], None], logger: Any,
                 join_timeout_s: float = 10.0,
                 max_failures: int = DEFAULT_MAX_FAILURES) -> None:
        if max_failures < 1:
            raise ValueError(f"max_failures must be >= 1, got {max_failures}")
        self.name, self.join_timeout_s, self.max_failures = name, join_timeout_s, max_failures
        self._target, self._logger = target, logger
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.consecutive_failures = 0
        self.failures = 0
        self.last_error = ""

    @property
    def stopping(self) -> bool:
        """True once ``stop`` was called: the target's loop must return."""
        return self._stop.is_set()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.alive:
            raise RuntimeError(f"{self.name} is already running")
        self._stop.clear()
        self._thread = threading.Thread(target=self._target, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, wake: Callable[[], None] | None = None) -> bool:
        """Ask the loop to end, call ``wake`` (unblock its wait) and join; False, with one
        error line, when the thread is still running after ``join_timeout_s``."""
        self._stop.set()
        if wake is not None:
            wake()
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout=self.join_timeout_s)
        if thread.is_alive():
            self._logger.error(f"{self.name} did not stop within {self.join_timeout_s:g} s "
                               "(stuck in an inference?); it is abandoned as a daemon thread")
            return False
        self._thread = None
        return True

    def succeeded(self) -> None:
        """An input went through: the failure streak is over."""
        with self._lock:
            self.consecutive_failures = 0

    def failed(self, what: str, err: BaseException) -> bool:
        """Count an unexpected exception on a valid-looking input (call from ``except``);
        True when this one made the streak reach ``max_failures`` (then logged once)."""
        with self._lock:
            self.failures += 1
            self.consecutive_failures += 1
            self.last_error = f"{what}: {type(err).__name__}: {err}"
            broken = self.consecutive_failures == self.max_failures
        if broken:
            trace = "".join(traceback.format_exception(type(err), err, err.__traceback__))
            self._logger.error(f"{self.name}: {self.max_failures} consecutive failures on "
                               "valid-looking inputs: this is a bug or a broken model, not bad "
                               f"input. Last one ({what}):\n{trace.rstrip()}")
        return broken

    def health(self) -> tuple[int, str]:
        """(DiagnosticStatus level, message) of the thread and its failure streak."""
        with self._lock:
            streak, last = self.consecutive_failures, self.last_error
        if not self.alive:
            return DiagnosticStatus.ERROR, f"{self.name} is not running"
        if streak >= self.max_failures:
            return DiagnosticStatus.ERROR, f"{self.name} failing: {streak} in a row ({last})"
        if streak:
            return DiagnosticStatus.WARN, f"{self.name}: {streak} failure(s) in a row ({last})"
        return DiagnosticStatus.OK, f"{self.name} running"
