"""The fault limiter: bounded in lines and in memory whatever the fault texts say.

The reference is hand-counted: a fake clock and logger, a known sequence of faults, and
the exact lines and counts a reader of the log should see.
"""

from __future__ import annotations

import pytest
from ros_required import require

require("rclpy", "the node helpers import rclpy")

from imagebind_ros import decode as dec  # noqa: E402
from imagebind_ros.ros.node_utils import OTHER_TOPICS, FaultLimiter, fault_kind  # noqa: E402


class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def warning(self, text: str) -> None:
        self.lines.append(text)


class Clock:
    t = 0.0

    def __call__(self) -> float:
        return self.t


def test_varying_texts_give_one_line_then_one_summary_per_period() -> None:
    """1,100 faults with a different text each (a random encoding, an address) over 55 s
    on one topic: the first is logged, then one summary per 10 s, with counts by kind."""
    log, clock = Log(), Clock()
    lim = FaultLimiter(log, period_s=10.0, clock=clock)
    for i in range(1100):
        clock.t = i * 0.05
        kind = dec.UNSUPPORTED_ENCODING if i % 3 else dec.MALFORMED
        lim.fault("camera/image_raw", kind, f"encoding 'x{i:x}y' at 0x{id(i) + i:x}")
    assert len(log.lines) == 1 + 5  # t = 0, then summaries at 10, 20, 30, 40, 50 s
    assert log.lines[0].startswith("camera/image_raw: encoding 'x0y'")
    first = log.lines[1]
    # faults 1..200 (t = 0.05 .. 10.0): 134 unsupported encoding, 66 malformed
    assert first.startswith("dropped 200 bad inputs on camera/image_raw in the last 10 s: "
                            "unsupported encoding x134, malformed x66 (last: encoding")
    clock.t = 70.0
    assert lim.flush() == 1 and log.lines[-1].startswith("dropped 99 bad inputs")
    assert lim.flush() == 0  # nothing pending
    assert lim.counts() == {"camera/image_raw": {dec.UNSUPPORTED_ENCODING: 733,
                                                 dec.MALFORMED: 367}}


def test_table_is_bounded_whatever_the_topics_and_kinds() -> None:
    log, clock = Log(), Clock()
    lim = FaultLimiter(log, period_s=10.0, clock=clock, max_topics=4)
    for i in range(1000):
        lim.fault(f"topic_{i}", f"kind {i}", "x")  # unknown kinds count as other
    counts = lim.counts()
    assert len(counts) == 5 and counts[OTHER_TOPICS] == {dec.OTHER: 996}
    assert len(log.lines) == 5 and len(lim._topics) == 5


def test_a_quiet_topic_logs_its_next_fault_in_full_and_topics_are_independent() -> None:
    log, clock = Log(), Clock()
    lim = FaultLimiter(log, period_s=10.0, clock=clock)
    assert lim.fault("a", dec.BAD_STAMP, "one")
    assert lim.fault("b", dec.BAD_STAMP, "two")  # another topic: its own line
    assert not lim.fault("a", dec.BAD_STAMP, "three")
    clock.t = 10.0
    assert lim.flush() == 1 and "dropped 1 bad inputs on a" in log.lines[-1]
    clock.t = 25.0
    assert lim.fault("a", dec.OUT_OF_RANGE, "four") and log.lines[-1] == "a: four"


@pytest.mark.parametrize("err, kind", [(dec.DecodeError("x", dec.TOO_LARGE), dec.TOO_LARGE),
                                       (ValueError("x"), dec.OTHER)])
def test_fault_kind(err: Exception, kind: str) -> None:
    assert fault_kind(err) == kind
