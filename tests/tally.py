"""Figures the property and fuzz tests count as they run; conftest.py prints them after the run."""

from collections import Counter

TALLY: Counter = Counter()


def record_slowest(key: str, milliseconds: float) -> None:
    TALLY[key] = max(float(TALLY.get(key, 0.0)), milliseconds)
