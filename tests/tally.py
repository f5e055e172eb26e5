"""Figures the property and fuzz tests count as they run; conftest.py prints them after the run."""

from collections import Counter

TALLY: Counter = Counter()


SLOWEST: dict[str, str] = {}  # key -> what took that long


def record_slowest(key: str, milliseconds: float, what: str = "") -> None:
    if milliseconds > float(TALLY.get(key, 0.0)):
        TALLY[key] = milliseconds
        if what:
            SLOWEST[key] = what


def merge(tally: dict, slowest: dict[str, str]) -> None:
    """Add another process's figures (a pytest-xdist worker's) to these: counts add up, a slowest time (a float, in
    ms, from record_slowest) keeps the larger one with what took it."""
    for key, value in tally.items():
        if isinstance(value, float):
            record_slowest(key, value, slowest.get(key, ""))
        else:
            TALLY[key] += value
