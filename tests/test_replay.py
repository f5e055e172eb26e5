"""The refactor's proof that nothing changed: every recorded call prints today what it printed when recorded.

The record (tests/record_replay.py) holds over 20,000 calls: the README and docs examples, every rule's example,
the cookbook and derivative tables, the benchmark inputs, hostile inputs and seeded random expressions, each
through diff (text, LaTeX, JSON, steps, code, forms, parse-back), hessian, grad, codegen, check and the CLI.
A call whose output a change altered on purpose is listed in tests/replay/accepted.json with its new output and
the reason; it must print exactly that, and its new derivative must have the recorded one's values.
The normal run replays one call in SAMPLE; `-m slow` replays them all.
"""

from __future__ import annotations

import pytest
from replay import comparable, key, load_accepted, load_record, run

SAMPLE = 10
RECORD = load_record()
ACCEPTED = load_accepted()


def _short(text: str, limit: int = 400) -> str:
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} characters)"


def _replay(entries: list[dict]) -> None:
    changed = []
    for entry in entries:
        call, recorded = entry["call"], entry["output"]
        now = run(call)
        expected = ACCEPTED.get(key(call), {}).get("output", recorded)
        if comparable(now) != comparable(expected):
            changed.append(f"{_short(key(call))}\n  recorded: {_short(expected)}\n  now:      {_short(now)}")
    assert not changed, f"{len(changed)} of {len(entries)} calls print something else:\n" + "\n".join(changed[:20])


def test_the_record_is_large_enough_to_prove_a_refactor():
    assert len(RECORD) >= 5_000


def test_a_sample_of_recorded_calls_prints_what_it_printed():
    _replay(RECORD[::SAMPLE])


@pytest.mark.slow
def test_every_recorded_call_prints_what_it_printed():
    _replay(RECORD)


def test_every_accepted_difference_is_a_recorded_call():
    recorded = {key(entry["call"]) for entry in RECORD}
    assert set(ACCEPTED) <= recorded
