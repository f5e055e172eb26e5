"""`matcalc serve` under load: the real server (uvicorn in a subprocess, on 127.0.0.1 at a free port) and N
concurrent mixed requests: easy, hard (SymPy proofs, programs, Hessians), hostile (work past the time limit, the
hardening tests' hostile inputs) and malformed. Every reply must be JSON with the status class its kind expects,
none may hang (no reply within `--hang` seconds), and the server must answer a simple request afterwards.
Prints the latency percentiles.

    python benchmarks/serve_load.py [--requests 200] [--workers 2] [--timeout 10]

tests/test_serve_load.py runs it (marked slow).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent

EASY = [("diff", {"expr": "x^T A x", "wrt": "x"}, "(A + A^T) x"),
        ("diff", {"expr": "x^T A x", "wrt": "x", "where": "A: symmetric"}, "2 A x"),
        ("diff", {"expr": "log(det(X))", "wrt": "X"}, "inv(X)^T"),
        ("diff", {"expr": "norm2(A x - b)^2", "wrt": "x"}, "2 A^T (A x - b)"),
        ("diff", {"expr": "W x + b", "wrt": "x", "layout": "denominator"}, "W^T"),
        ("diff", {"expr": "tr(A X B)", "wrt": "X", "steps": "chain"}, None),
        ("diff", {"expr": "sigmoid(W x + b)", "wrt": "x", "steps": "index"}, None),
        ("diff", {"expr": "x'*A*x", "wrt": "x"}, "(A + A^T) x"),  # matrixcalculus.org's syntax
        ("code", {"expr": "x^T A x", "wrt": "x", "backend": "torch"}, None),
        ("code", {"expr": "sum(tanh(W x))", "wrt": ["W", "x"], "backend": "numpy"}, None)]
HARD = [("check", {"expr": "x^T A x", "wrt": "x", "candidate": "2 A x"}, None),
        ("check", {"expr": "a^T X b", "wrt": "X", "candidate": "a b^T"}, None),
        ("verify", {"expr": "log(det(X))", "wrt": "X"}, None),
        ("diff", {"expr": "x^T A x + sum(exp(x))", "wrt": "x", "kind": "hessian", "verify": True}, None),
        ("diff", {"expr": "h1 = tanh(W1 x); h2 = tanh(W2 h1); h3 = tanh(W3 h2); L = sum(h3)",
                  "wrt": ["W1", "W2", "W3"], "steps": "chain"}, None)]
HOSTILE_PROOF = "det(inv(X + A) inv(X + B) inv(X + C) inv(X + D) inv(X + E) inv(X + F))^5"
MALFORMED: list[tuple[str, bytes, int]] = [
    ("diff", b'{"expr": "x^T A x", ', 400), ("diff", b"[1, 2]", 400), ("diff", b'{"expr": 3, "wrt": "x"}', 400),
    ("diff", b'{"expr": "x", "wrt": "x", "eval": 1}', 400), ("diff", b'{"expr": "x"}', 400),
    ("code", b'{"expr": "x^T x", "wrt": "x", "backend": "fortran"}', 400),
    ("diff", json.dumps({"expr": "x", "wrt": "x", "where": " " * 70_000}).encode(), 413),
    ("diff", b'{"expr": "x^T A +* x", "wrt": "x"}', 422), ("diff", b'{"expr": "A x + y x^T", "wrt": "x"}', 422),
    ("check", b'{"expr": "x^T x", "wrt": "x", "candidate": "2 x)"}', 422), ("nope", b"{}", 404),
]


def _hostile_inputs() -> list[str]:
    """The hardening tests' hostile inputs (tests/test_fuzz.py), and work that runs past any time limit."""
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        from test_fuzz import HOSTILE
    except ImportError:  # without the test tools (hypothesis): the proof alone
        HOSTILE = []
    return [HOSTILE_PROOF, *(text for _, text in HOSTILE)]


@dataclass
class Outcome:
    kind: str
    status: int
    seconds: float
    problem: str | None = None


@dataclass
class Load:
    outcomes: list[Outcome] = field(default_factory=list)
    after: float = 0.0  # seconds the simple request took afterwards

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.problem]

    def percentiles(self) -> dict[str, float]:
        times = sorted(o.seconds for o in self.outcomes)

        def at(q: float) -> float:
            return times[min(len(times) - 1, int(q * len(times)))]

        return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": times[-1]}

    def report(self) -> str:
        statuses: dict[str, dict[int, int]] = {}
        for o in self.outcomes:
            statuses.setdefault(o.kind, {}).setdefault(o.status, 0)
            statuses[o.kind][o.status] += 1
        p = self.percentiles()
        lines = [f"{len(self.outcomes)} requests, {len(self.failures)} failures; latency p50 {p['p50']:.3f} s, "
                 f"p90 {p['p90']:.3f} s, p99 {p['p99']:.3f} s, max {p['max']:.3f} s; a simple request afterwards "
                 f"{self.after:.3f} s"]
        lines += [f"  {kind}: " + ", ".join(f"{status}×{count}" for status, count in sorted(counts.items()))
                  for kind, counts in sorted(statuses.items())]
        lines += [f"  FAILED {o.kind} ({o.status}): {o.problem}" for o in self.failures[:20]]
        return "\n".join(lines)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(port: int, workers: int, timeout: float, queue: int,
                 proof_timeout: float | None = None) -> subprocess.Popen:
    """`python -m matcalc serve` on 127.0.0.1:port, once its workers are ready."""
    proof = ["--proof-timeout", str(proof_timeout)] if proof_timeout is not None else []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    server = subprocess.Popen([sys.executable, "-m", "matcalc", "serve", "--host", "127.0.0.1", "--port", str(port),
                               "--workers", str(workers), "--timeout", str(timeout), "--queue", str(queue), *proof],
                              env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server stopped: {server.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.kill()
    raise RuntimeError("the server did not start within 60 s")


def mixed_requests(count: int, seed: int = 19) -> list[tuple[str, str, bytes, set[int], str | None]]:
    """(kind, endpoint, body, the statuses expected, the expected text) for `count` requests, shuffled: about half
    easy, a sixth hard, a sixth hostile, a sixth malformed."""
    rng = random.Random(seed)
    hostile = _hostile_inputs()
    out: list[tuple[str, str, bytes, set[int], str | None]] = []
    hostile_count = 0
    for index in range(count):
        share = index % 12
        if share < 6:
            endpoint, body, text = EASY[index % len(EASY)]
            out.append(("easy", endpoint, json.dumps(body).encode(), {200}, text))
        elif share < 8:
            endpoint, body, text = HARD[index % len(HARD)]
            out.append(("hard", endpoint, json.dumps(body).encode(), {200}, text))
        elif share < 10:
            text = hostile[hostile_count % len(hostile)]  # the proof past the limit first, and each of them in turn
            hostile_count += 1
            endpoint = "verify" if text == HOSTILE_PROOF else "diff"
            body = {"expr": text, "wrt": "X" if "X" in text else "x"}
            # a result, a clean refusal (too long, not in the language), or stopped at the time limit; the hostile
            # proof is proven within the limit or stopped at it, whichever this machine's speed makes it (its stop at
            # a limit it cannot meet is tests/test_serve.py's, with a limit far below its work)
            expected = {200, 504} if text == HOSTILE_PROOF else {200, 413, 422, 504}
            out.append(("hostile", endpoint, json.dumps(body).encode(), expected, None))
        else:
            endpoint, raw, status = MALFORMED[index % len(MALFORMED)]
            out.append(("malformed", endpoint, raw, {status}, None))
    rng.shuffle(out)
    return out


async def _send(client: httpx.AsyncClient, kind: str, endpoint: str, body: bytes, expected: set[int],
                text: str | None) -> Outcome:
    start = time.perf_counter()
    try:
        response = await client.post(f"/api/{endpoint}", content=body, headers={"content-type": "application/json"})
    except httpx.TimeoutException:
        return Outcome(kind, 0, time.perf_counter() - start, "no reply: a hang")
    except httpx.HTTPError as error:
        return Outcome(kind, 0, time.perf_counter() - start, f"connection error: {type(error).__name__}: {error}")
    seconds = time.perf_counter() - start
    try:
        reply = response.json()
    except ValueError:
        return Outcome(kind, response.status_code, seconds, f"not JSON: {response.text[:200]!r}")
    problem = None
    if response.status_code not in expected:
        problem = f"status {response.status_code}, expected {sorted(expected)}: {json.dumps(reply)[:300]}"
    elif response.status_code >= 400 and not reply.get("error", {}).get("message"):
        problem = f"an error without a message: {json.dumps(reply)[:300]}"
    elif text is not None and reply.get("text") != text:
        problem = f"text {reply.get('text')!r}, expected {text!r}"
    return Outcome(kind, response.status_code, seconds, problem)


async def run_load(base: str, count: int, hang: float) -> Load:
    load = Load()
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(base_url=base, timeout=hang, limits=limits) as client:
        load.outcomes = list(await asyncio.gather(*(_send(client, *r) for r in mixed_requests(count))))
        start = time.perf_counter()
        after = await _send(client, "after", "diff", b'{"expr": "x^T A x", "wrt": "x"}', {200}, "(A + A^T) x")
        load.after = time.perf_counter() - start
        if after.problem:
            load.outcomes.append(after)
    return load


def measure(count: int = 200, workers: int = 2, timeout: float = 10.0, queue: int | None = None,
            hang: float = 120.0) -> Load:
    """Start the server, send the load, stop the server. The proofs may run past the time limit (to 10 times it),
    so that the hostile proof is stopped by the limit: its worker killed and replaced under load."""
    port = free_port()
    server = start_server(port, workers, timeout, count if queue is None else queue, proof_timeout=10 * timeout)
    try:
        return asyncio.run(run_load(f"http://127.0.0.1:{port}", count, hang))
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=10.0, help="the server's time limit per request")
    parser.add_argument("--queue", type=int, default=None, help="the server's queue (default: --requests)")
    args = parser.parse_args()
    start = time.perf_counter()
    load = measure(args.requests, args.workers, args.timeout, args.queue)
    print(load.report())
    print(f"total {time.perf_counter() - start:.1f} s")
    return 1 if load.failures else 0


if __name__ == "__main__":
    sys.exit(main())
