"""`matcalc serve`: the JSON API answers as the Python API does, its formulas are right in numbers, every bad
request is a clean JSON error, and a hostile input is stopped at the time limit while the server goes on
answering. Skipped without the extra `web` (Starlette, uvicorn, httpx)."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

import warnings

with warnings.catch_warnings():  # Starlette 1.x warns that its TestClient will move from httpx to httpx2
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from oracles import evaluate_expr, finite_difference, random_values

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))  # serve_load: the real server

import matcalc
from matcalc.serve.app import create_app
from matcalc.serve.pool import Settings

ROOT = Path(__file__).resolve().parent.parent
# ≥ 20 s of exact SymPy work on a quiet machine (measured: the ^3 form alone takes 20 s); stopped at 0.5 s here
HOSTILE_PROOF = "det(inv(X + A) inv(X + B) inv(X + C) inv(X + D) inv(X + E) inv(X + F))^5"


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(Settings(workers=2, timeout=60.0, max_expr=20_000))) as test_client:
        yield test_client


def post(client: TestClient, endpoint: str, body: Any) -> tuple[int, dict[str, Any]]:
    response = client.post(f"/api/{endpoint}", json=body)
    assert response.headers["content-type"].startswith("application/json")
    return response.status_code, response.json()


# ---------------------------------------------------------------- happy paths, checked by numbers


@pytest.mark.parametrize(("expr", "wrt", "where"), [("x^T A x", "x", None), ("log(det(X))", "X", None),
                                                     ("W x + b", "x", None), ("x^T S x", "x", "S: symmetric")])
def test_diff_reply_parses_back_to_the_finite_difference_derivative(client, expr, wrt, where):
    status, reply = post(client, "diff", {"expr": expr, "wrt": wrt, **({"where": where} if where else {})})
    assert status == 200
    oracle = matcalc.diff(expr, wrt, where)  # its function only: finite_difference differentiates it numerically
    values = random_values([oracle.function], seed=3)
    served = matcalc.parse(reply["text"], reply["where"])
    np.testing.assert_allclose(evaluate_expr(served, values, (oracle.function,)).reshape(-1),
                               finite_difference(oracle, values).reshape(-1), rtol=1e-5, atol=1e-7)


def test_diff_reply_holds_the_fields_of_the_cli_json(client):
    status, reply = post(client, "diff", {"expr": "sigmoid(W x + b)", "wrt": "x", "steps": "chain"})
    expected = {"input": "sigmoid(W x + b)", **matcalc.diff("sigmoid(W x + b)", "x").to_json("chain")}
    assert status == 200
    assert {key: reply[key] for key in expected} == expected
    assert reply["mathml"].startswith("<math")


def test_diff_of_a_hessian_matches_finite_differences_of_the_gradient(client):
    status, reply = post(client, "diff", {"expr": "x^T A x + sum(exp(x))", "wrt": "x", "kind": "hessian"})
    assert status == 200 and reply["kind"] == "hessian"
    oracle = matcalc.hessian("x^T A x + sum(exp(x))", "x")
    values = random_values([oracle.function], seed=1)
    served = matcalc.parse(reply["text"], reply["where"])
    np.testing.assert_allclose(evaluate_expr(served, values, (oracle.function,)),
                               finite_difference(oracle, values), rtol=1e-5, atol=1e-6)


def test_diff_of_several_variables_gives_the_gradients_of_one_backward_pass(client):
    program = "h = tanh(W1 x); L = sum(tanh(W2 h))"
    status, reply = post(client, "diff", {"expr": program, "wrt": ["W1", "W2"]})
    assert status == 200
    assert reply["text"] == str(matcalc.grad(program, ["W1", "W2"]))
    for name in ("W1", "W2"):
        oracle = matcalc.diff(program, name)
        values = random_values([oracle.function], seed=2)
        record = reply["gradients"][name]
        served = matcalc.parse(record["text"], record["where"])  # a program: its last line, over the names above
        np.testing.assert_allclose(evaluate_expr(served, values, (oracle.function,)),
                                   finite_difference(oracle, values), rtol=1e-5, atol=1e-7)


def _number(text: str) -> float:
    return float(Fraction(text))


def test_check_of_a_wrong_candidate_gives_a_counterexample_that_is_one(client):
    status, reply = post(client, "check", {"expr": "x^T A x", "wrt": "x", "candidate": "2 A x"})
    assert status == 200 and reply["verdict"] == "wrong"
    point = {name: np.array([[_number(v) for v in row] for row in value]) for name, value in reply["point"].items()}
    values = {"x": point["x"][:, 0], "A": point["A"]}
    oracle = matcalc.diff("x^T A x", "x")
    candidate = values["A"] @ values["x"] * 2
    truth = finite_difference(oracle, values)
    assert not np.allclose(candidate, truth)
    for mismatch in reply["mismatches"]:  # each differing entry: expected is the true derivative's
        row = mismatch["entry"][0]
        assert _number(mismatch["expected"]) == pytest.approx(truth[row], rel=1e-6)
        assert _number(mismatch["got"]) == pytest.approx(candidate[row], rel=1e-12)


def test_check_of_a_right_candidate_is_correct(client):
    status, reply = post(client, "check", {"expr": "x^T A x", "wrt": "x", "candidate": "A x + A^T x"})
    assert status == 200 and reply["verdict"] == "correct"
    assert reply["message"].startswith("correct")


def test_verify_proves_the_result(client):
    status, reply = post(client, "verify", {"expr": "log(det(X))", "wrt": "X"})
    assert status == 200 and reply["verified"] is True and reply["text"] == "inv(X)^T"


def _streamed(client: TestClient, endpoint: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = client.post(f"/api/{endpoint}", json={**body, "stream": True})
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in response.text.splitlines()]


def test_a_streamed_verify_reports_the_proofs_progress_then_the_plain_reply(client):
    body = {"expr": "h1 = tanh(W1 x); h2 = tanh(W2 h1); L = sum(h2)", "wrt": "W1"}
    lines = _streamed(client, "verify", body)
    *progress, last = lines
    assert progress and all(set(line) == {"progress"} and line["progress"].startswith("sizes ") for line in progress)
    status, plain = post(client, "verify", body)
    assert last["status"] == status == 200 and last["reply"]["verified"] is True
    assert last["reply"]["text"] == plain["text"]


def test_a_streamed_check_of_a_wrong_candidate_ends_in_its_counterexample(client):
    lines = _streamed(client, "check", {"expr": "x^T A x", "wrt": "x", "candidate": "2 A x"})
    assert lines[-1]["status"] == 200 and lines[-1]["reply"]["verdict"] == "wrong" and lines[-1]["reply"]["point"]


def test_a_streamed_error_ends_in_the_status_the_plain_request_has(client):
    body = {"expr": "x^T A x +", "wrt": "x"}  # a syntax error: no proof, one line
    assert _streamed(client, "verify", body) == [{"status": 422, "reply": post(client, "verify", body)[1]}]


def test_code_computes_the_finite_difference_derivative(client):
    status, reply = post(client, "code", {"expr": "norm2(A x - b)^2", "wrt": "x", "backend": "numpy"})
    assert status == 200 and reply["backend"] == "numpy"
    namespace: dict[str, Any] = {}
    exec(compile(reply["code"], "<generated>", "exec"), namespace)  # the generated code, as tests/test_codegen.py
    function = next(value for name, value in namespace.items() if name.startswith("df_"))
    oracle = matcalc.diff("norm2(A x - b)^2", "x")
    values = random_values([oracle.function], seed=5)
    computed = function(**{name: values[name] for name in ("x", "A", "b")})
    np.testing.assert_allclose(computed, finite_difference(oracle, values), rtol=1e-5, atol=1e-6)


def test_code_of_several_variables_is_one_function_of_value_and_gradients(client):
    status, reply = post(client, "code", {"expr": "sum(tanh(W x))", "wrt": ["W", "x"], "backend": "jax"})
    assert status == 200
    assert reply["code"] == str(matcalc.codegen("sum(tanh(W x))", ["W", "x"], backend="jax"))


def test_the_page_and_its_files_are_served_with_the_ids_the_docs_list(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    documented = re.findall(r"`#([a-z-]+)`", (ROOT / "docs" / "server.md").read_text(encoding="utf-8"))
    script = client.get("/static/app.js").text  # the verdict's parts are made by the script
    missing = [name for name in documented if f'id="{name}"' not in page.text and f'.id = "{name}"' not in script]
    assert documented and not missing
    assert not re.search(r"(src|href)=\"(https?:)?//", page.text)  # nothing from elsewhere
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200


# ---------------------------------------------------------------- every bad request: a clean JSON error


BAD_REQUESTS = [
    ("not JSON", "diff", b'{"expr": "x", ', 400, "BadJSON"),
    ("not UTF-8", "diff", b'{"expr": "\xff"}', 400, "BadJSON"),
    ("not an object", "diff", [1, 2], 400, "BadRequest"),
    ("deeply nested JSON", "diff", b"[" * 100_00 + b"]" * 100_00, 400, "BadJSON"),
    ("an unknown field", "diff", {"expr": "x^T x", "wrt": "x", "eval": "1"}, 400, "UnknownField"),
    ("a missing field", "diff", {"expr": "x^T x"}, 400, "MissingField"),
    ("expr a number", "diff", {"expr": 3, "wrt": "x"}, 400, "WrongType"),
    ("wrt a number", "diff", {"expr": "x^T x", "wrt": 5}, 400, "WrongType"),
    ("wrt an empty list", "diff", {"expr": "x^T x", "wrt": []}, 400, "WrongType"),
    ("wrt a list of numbers", "diff", {"expr": "x^T x", "wrt": [1]}, 400, "WrongType"),
    ("verify a string", "diff", {"expr": "x^T x", "wrt": "x", "verify": "yes"}, 400, "WrongType"),
    ("hessian_of a number", "check", {"expr": "x^T x", "wrt": "x", "candidate": "2 x", "hessian_of": 1}, 400,
     "WrongType"),
    ("where an object of numbers", "diff", {"expr": "x^T x", "wrt": "x", "where": {"x": 3}}, 400, "WrongType"),
    ("a negative proof timeout", "check", {"expr": "x^T x", "wrt": "x", "candidate": "2 x", "timeout": -1}, 400,
     "BadValue"),
    ("an infinite proof timeout", "check", b'{"expr": "x^T x", "wrt": "x", "candidate": "2 x", "timeout": Infinity}',
     400, "BadValue"),
    ("an unknown layout", "diff", {"expr": "x^T x", "wrt": "x", "layout": "sideways"}, 400, "BadValue"),
    ("an unknown method", "diff", {"expr": "x^T x", "wrt": "x", "steps": "magic"}, 400, "BadValue"),
    ("an unknown backend", "code", {"expr": "x^T x", "wrt": "x", "backend": "fortran"}, 400, "BadValue"),
    ("an expression too long", "diff", {"expr": "x + " * 6000 + "x", "wrt": "x"}, 413, "TooLong"),
    ("a body too large", "diff", {"expr": "x", "wrt": "x", "where": " " * 70_000}, 413, "TooLarge"),
    ("a syntax error", "diff", {"expr": "x^T A +* x", "wrt": "x"}, 422, "ParseError"),
    ("a shape error", "diff", {"expr": "A x + y x^T", "wrt": "x"}, 422, "ShapeError"),
    ("a bad declaration", "diff", {"expr": "x^T A x", "wrt": "x", "where": "A: banana"}, 422, "DeclarationError"),
    ("a Jacobian asked as a gradient", "diff", {"expr": "W x", "wrt": "x", "kind": "gradient"}, 422, "ShapeError"),
    ("a Hessian of a vector", "diff", {"expr": "W x", "wrt": "x", "kind": "hessian"}, 422, "ShapeError"),
    ("a candidate's syntax error", "check", {"expr": "x^T x", "wrt": "x", "candidate": "2 x)"}, 422, "ParseError"),
    ("Python", "diff", {"expr": "__import__('os').system('touch pwned')", "wrt": "x"}, 422, "ParseError"),
]


@pytest.mark.parametrize(("endpoint", "body", "status", "kind"), [case[1:] for case in BAD_REQUESTS],
                         ids=[case[0] for case in BAD_REQUESTS])
def test_a_bad_request_is_a_json_error(client, endpoint, body, status, kind):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = client.post(f"/api/{endpoint}", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == status
    error = response.json()["error"]
    assert error["type"] == kind and error["message"] and "Traceback" not in response.text


def test_a_syntax_error_carries_its_caret_position_and_hint(client):
    status, reply = post(client, "diff", {"expr": "x^T A +* x", "wrt": "x"})
    error = reply["error"]
    assert status == 422 and error["position"] == 7
    assert error["caret"].split("\n")[1].index("^") - 2 == error["position"]  # under the '*', as the CLI shows it
    assert error["hint"].startswith("expected")


@pytest.mark.parametrize(("method", "path", "status"), [("GET", "/api/diff", 405), ("POST", "/api/nope", 404),
                                                        ("GET", "/nope", 404), ("PUT", "/api/check", 405)])
def test_a_wrong_address_or_method_is_a_json_error(client, method, path, status):
    response = client.request(method, path)
    assert response.status_code == status and "error" in response.json()


def test_the_fuzz_inputs_of_the_hardening_tests_give_clean_replies(client):
    from test_fuzz import HOSTILE, WHERE, WRT, mutate, seed_expressions, token_soup

    rng = random.Random(19)
    seeds = seed_expressions()
    cases = [(text, "X" if "X" in text else "x", None) for _, text in HOSTILE]
    cases += [(token_soup(rng) if rng.random() < 0.4 else mutate(rng.choice(seeds), rng), rng.choice(WRT),
               rng.choice(WHERE)) for _ in range(60)]
    statuses = {}
    for text, wrt, where in cases:
        body = {"expr": text, "wrt": wrt, **({"where": where} if where is not None else {})}
        response = client.post("/api/diff", content=json.dumps(body).encode(),
                               headers={"content-type": "application/json"})
        reply = response.json()
        assert response.status_code in (200, 400, 413, 422), (text[:100], reply)
        assert response.status_code == 200 or reply["error"]["message"]
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
    assert statuses.get(200) and statuses.get(422) and statuses.get(413)  # each kind of reply was seen


# ---------------------------------------------------------------- the time limit, the queue


def _health(client: TestClient) -> dict[str, Any]:
    return client.get("/api/health").json()


def _wait_for(client: TestClient, condition: Any, seconds: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        health = _health(client)
        if condition(health):
            return health
        time.sleep(0.02)
    raise AssertionError(f"the server's state never came: {_health(client)}")


def test_a_hostile_input_is_stopped_at_the_time_limit_and_the_server_answers_after(tmp_path):
    # one worker, no queue: while the hostile request runs, another is refused at once (503)
    settings = Settings(workers=1, timeout=0.5, proof_timeout=600.0, queue=0)
    with TestClient(create_app(settings)) as small:
        hostile: dict[str, Any] = {}

        def send() -> None:
            hostile["reply"] = small.post("/api/verify", json={"expr": HOSTILE_PROOF, "wrt": "X"})

        thread = threading.Thread(target=send)
        thread.start()
        _wait_for(small, lambda health: health["idle"] == 0)
        busy = small.post("/api/diff", json={"expr": "x^T A x", "wrt": "x"})
        thread.join(30)
        assert not thread.is_alive()
        assert busy.status_code == 503 and busy.json()["error"]["type"] == "Busy"
        assert hostile["reply"].status_code == 504 and hostile["reply"].json()["error"]["type"] == "Timeout"
        health = _wait_for(small, lambda health: health["idle"] == 1)  # the killed worker is replaced
        assert health["timeouts"] == 1 and health["replaced"] == 1
        status, reply = post(small, "diff", {"expr": "x^T A x", "wrt": "x"})
        assert status == 200 and reply["text"] == "(A + A^T) x"


def test_a_streamed_proof_past_the_time_limit_ends_in_the_504_line():
    with TestClient(create_app(Settings(workers=1, timeout=0.5, proof_timeout=600.0))) as small:
        lines = _streamed(small, "verify", {"expr": HOSTILE_PROOF, "wrt": "X"})
        assert lines[-1]["status"] == 504 and lines[-1]["reply"]["error"]["type"] == "Timeout"
        assert all("progress" in line for line in lines[:-1])


# ---------------------------------------------------------------- the docs' examples, the CLI


def _documented_examples() -> list[tuple[str, dict[str, Any], int, dict[str, Any]]]:
    text = (ROOT / "docs" / "server.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```(request|response)\n(.*?)```", text, flags=re.S)
    examples = []
    for (kind_a, request), (kind_b, response) in zip(blocks[::2], blocks[1::2], strict=True):
        assert (kind_a, kind_b) == ("request", "response")
        line, body = request.split("\n", 1)
        status, fields = response.split("\n", 1)
        examples.append((line.split()[1], json.loads(body), int(status), json.loads(fields)))
    return examples


def _holds(reply: Any, expected: Any) -> bool:
    if isinstance(expected, dict):
        return isinstance(reply, dict) and all(key in reply and _holds(reply[key], value)
                                               for key, value in expected.items())
    return reply == expected


@pytest.mark.parametrize(("path", "body", "status", "fields"), _documented_examples())
def test_the_documented_examples_give_their_documented_replies(client, path, body, status, fields):
    response = client.post(path, json=body)
    assert response.status_code == status
    assert _holds(response.json(), fields), response.json()


def test_serve_without_the_web_extra_says_what_to_install():
    # the extra's packages made unimportable: None in sys.modules makes `import starlette` fail
    code = ("import sys; sys.modules['starlette'] = None; sys.modules['uvicorn'] = None\n"
            "from matcalc.cli import main; sys.exit(main(['serve']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 2
    assert "pip install 'matcalc-symbolic[web]'" in done.stderr


@pytest.mark.slow  # a few seconds: the fork server's imports; CI runs the real server under load anyway
def test_matcalc_serve_runs_the_real_server_on_the_loopback_address():
    import httpx
    from serve_load import free_port, start_server

    port = free_port()
    server = start_server(port, workers=1, timeout=10.0, queue=4)  # `python -m matcalc serve ...`
    try:
        reply = httpx.post(f"http://127.0.0.1:{port}/api/diff", json={"expr": "x^T A x", "wrt": "x"}, timeout=30)
        assert reply.status_code == 200 and reply.json()["text"] == "(A + A^T) x"
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=30).status_code == 200
    finally:
        server.terminate()
        server.wait(15)
    assert server.returncode is not None


def test_a_worker_that_dies_gives_a_json_500_and_is_replaced():
    import asyncio
    import os
    import signal

    from matcalc.serve.pool import Pool

    async def scenario() -> tuple[int, dict[str, Any], int, str]:
        pool = Pool(Settings(workers=1, timeout=60.0, proof_timeout=600.0))
        await pool.start()
        try:
            (worker,) = pool.workers
            running = asyncio.ensure_future(pool.run("verify", {"expr": HOSTILE_PROOF, "wrt": "X"}))
            await asyncio.sleep(0.3)
            os.kill(worker.process.pid, signal.SIGKILL)  # as the kernel's out-of-memory killer would
            status, payload = await running
            after, reply = await pool.run("diff", {"expr": "x^T A x", "wrt": "x"})
            return status, payload, after, reply["text"]
        finally:
            await pool.close()

    status, payload, after, text = asyncio.run(scenario())
    assert status == 500 and payload["error"]["type"] == "WorkerDied"
    assert after == 200 and text == "(A + A^T) x"
