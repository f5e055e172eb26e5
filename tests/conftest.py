"""Test settings: hypothesis profiles, the long run, and the figures the property tests count.

- The default run is quick: a few hundred random expressions.
- The long run checks at least 10,000: `python -m pytest -m slow` (or MATCALC_LONG=1 python -m pytest).
- On CI (CI=true), hypothesis is derandomised, so that a run is repeatable and cannot fail by chance.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings
from tally import SLOWEST, TALLY, merge

settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", parent=settings.get_profile("default"), derandomize=True, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")

# A proof's default limit (30 s) is the user's patience, not a property of the engine: a test that proves with it
# passes or fails with the machine's load. Under test, proofs without an explicit `timeout` may take 10 minutes,
# which a loaded CI machine meets many times over; the tests of "undecided" give their own, tiny limits. A CLI
# test in a subprocess keeps the 30 s default: one that proves more than a formula passes --timeout itself.
TEST_PROOF_SECONDS = 600.0


@pytest.fixture(autouse=True, scope="session")
def _proofs_are_not_timed_by_the_machine_load() -> Iterator[None]:
    from matcalc.backends import verify

    default, verify.DEFAULT_TIMEOUT = verify.DEFAULT_TIMEOUT, TEST_PROOF_SECONDS
    yield
    verify.DEFAULT_TIMEOUT = default


def long_run(config: pytest.Config) -> bool:
    return bool(os.environ.get("MATCALC_LONG")) or "slow" in (config.getoption("-m") or "")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if long_run(config):
        return
    skip = pytest.mark.skip(reason="long run: python -m pytest -m slow (or MATCALC_LONG=1)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def pytest_sessionfinish(session: pytest.Session) -> None:
    output = getattr(session.config, "workeroutput", None)
    if output is not None:  # a pytest-xdist worker: its figures go to the controller, which prints them all
        output["matcalc_tally"], output["matcalc_slowest"] = dict(TALLY), dict(SLOWEST)


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist's, called on the controller as each worker ends
def pytest_testnodedown(node: object, error: object) -> None:
    output = getattr(node, "workeroutput", {})
    merge(output.get("matcalc_tally", {}), output.get("matcalc_slowest", {}))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TALLY:
        terminalreporter.section("matcalc figures")
        for key, value in TALLY.items():
            text = f"{value:.1f} ms" if isinstance(value, float) else f"{value:,}"
            if key in SLOWEST:
                text += f" ({SLOWEST[key][:200]})"
            terminalreporter.write_line(f"{key}: {text}")
