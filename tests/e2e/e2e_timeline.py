"""Concurrency figures from task-instance intervals: how many ran at once, and for how long."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Overlap:
    """``peak``: most intervals open at one instant; ``seconds``: time with at least two open."""

    peak: int
    seconds: float
    span: float


def overlap(intervals: Sequence[tuple[datetime, datetime]]) -> Overlap:
    """Sweep the start/end instants; intervals that only touch (one ends as the next starts) do not overlap."""
    if not intervals:
        return Overlap(peak=0, seconds=0.0, span=0.0)
    for start, end in intervals:
        if end < start:
            raise ValueError(f"interval ends before it starts: {start.isoformat()} > {end.isoformat()}")
    # At equal instants ends (-1) sort before starts (+1).
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    open_now = peak = 0
    together = 0.0
    previous = events[0][0]
    for instant, change in events:
        if open_now >= 2:
            together += (instant - previous).total_seconds()
        open_now += change
        peak = max(peak, open_now)
        previous = instant
    span = (max(end for _, end in intervals) - min(start for start, _ in intervals)).total_seconds()
    return Overlap(peak=peak, seconds=together, span=span)
