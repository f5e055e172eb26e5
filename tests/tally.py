"""Figures the property and fuzz tests count as they run; conftest.py prints them after the run."""

from collections import Counter

TALLY: Counter = Counter()


SLOWEST: dict[str, str] = {}  # key -> what took that long


def record_slowest(key: str, milliseconds: float, what: str = "") -> None:
    if milliseconds > float(TALLY.get(key, 0.0)):
        TALLY[key] = milliseconds
        if what:
            SLOWEST[key] = what
