"""A node (or node graph) in a child process for the DDS tests, with its log collected."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# unbuffered, uncoloured ROS logging, so log lines arrive as they are written
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "RCUTILS_LOGGING_BUFFERED_STREAM": "0",
       "RCUTILS_COLORIZED_OUTPUT": "0"}


def wait_for(pred: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``pred`` until it returns something truthy; fail the test after ``timeout`` s."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = pred()
        if got:
            return got
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class NodeProcess:
    """A child process whose stdout+stderr lines are collected as they come."""

    def __init__(self, cmd: Sequence[str], cwd: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(list(cmd), cwd=cwd, env=env or ENV, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())

    def warnings(self, since: int = 0) -> list[str]:
        return [ln for ln in self.lines[since:] if "WARN" in ln]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Signal the process, kill it if it does not exit in ``timeout`` s; its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=5)  # the last lines are in self.lines
        return self.proc.returncode
