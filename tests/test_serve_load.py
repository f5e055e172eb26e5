"""`matcalc serve` under load (benchmarks/serve_load.py): the real server, 200 concurrent mixed requests (easy,
hard, hostile, malformed), every reply JSON with its expected status class, no hang, no connection error, and a
simple request answered afterwards. Slow (about 40 s on two cores): run with -m slow."""

from __future__ import annotations

import pytest
from serving import serve_load

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")


@pytest.mark.slow
def test_200_concurrent_mixed_requests_get_their_replies_and_the_server_answers_after():
    load = serve_load().measure(count=200, workers=2, timeout=10.0, hang=120.0)
    print(load.report())
    assert len(load.outcomes) == 200
    assert not load.failures, load.report()
    kinds = {outcome.kind for outcome in load.outcomes}
    assert kinds == {"easy", "hard", "hostile", "malformed"}
    assert load.after < 10.0  # within the server's limit: it still answers
