"""The page of `matcalc serve` in a real headless browser (Debian's Chromium, driven by Playwright), as a user uses
it: type an expression, read the typeset result, switch forms, show the steps, check a wrong candidate and see
the counterexample, copy the code. The page's answers are checked by numbers, not by their look: the result it
shows is proven by matcalc.check (SymPy), and the code it copies runs and matches central differences.

Screenshots at a phone and a desktop width are written to build/screenshots/ (MATCALC_SCREENSHOTS overrides).
Where Playwright or Chromium is missing the tests skip, except under CI, where .ci/run installs both: there a
missing browser is a failure, so that a skip cannot hide the browser tests."""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from serving import serve_load

import matcalc

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("MATCALC_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(os.environ.get("MATCALC_SCREENSHOTS", ROOT / "build" / "screenshots"))
# as the environment notes ask: no background connections (the network is closed), a fresh profile
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


def _missing(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing under CI: .ci/run installs it")
    pytest.skip(f"{what} is not installed")


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    for module in ("starlette", "uvicorn", "httpx"):
        if importlib.util.find_spec(module) is None:
            _missing(f"{module} (the web extra)")
    load = serve_load()
    port = load.free_port()
    server = load.start_server(port, workers=2, timeout=20.0, queue=16)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if importlib.util.find_spec("playwright") is None:
        _missing("playwright")
    if not Path(CHROMIUM).exists():
        _missing(f"Chromium ({CHROMIUM})")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any, base_url: str) -> Iterator[Any]:
    context = browser.new_context(viewport=DESKTOP)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base_url)
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(base_url)
    page.wait_for_selector('body[data-ready="true"]')
    yield page
    context.close()


def differentiate(page: Any, expr: str, wrt: str, where: str = "") -> None:
    page.fill("#expr", expr)
    page.fill("#wrt", wrt)
    page.fill("#where", where)
    page.click("#go")
    page.wait_for_selector('body[data-busy="false"]')
    page.wait_for_selector("#output:not([hidden]), #error:not([hidden])")


def test_a_typed_expression_comes_back_typeset_and_what_it_says_is_proven(page):
    differentiate(page, "x^T A x", "x")
    assert page.locator("#result math").count() == 1  # typeset as MathML, which Chromium renders natively
    assert page.locator("#result").get_attribute("data-kind") == "gradient"
    text = page.inner_text("#result-text").strip()
    assert text == "(A + A^T) x"
    assert matcalc.check("x^T A x", "x", text)  # what the page shows is the derivative, proven by SymPy


def test_matrixcalculus_org_syntax_and_a_program_work_in_the_page(page):
    differentiate(page, "x'*A*x", "x")
    assert matcalc.check("x^T A x", "x", page.inner_text("#result-text").strip())
    differentiate(page, "h = tanh(W x); L = sum(h)", "W")
    shown = page.inner_text("#result-text").strip()
    assert matcalc.check("sum(tanh(W x))", "W", shown.replace("\n", "; "))  # a printed program as the candidate


def test_switching_forms_shows_the_index_and_differential_forms(page):
    differentiate(page, "W x + b", "x")
    forms = page.locator("#form option").all_inner_texts()
    assert {"index", "differential"} <= set(forms), forms
    page.select_option("#form", "index")
    assert "∂" in page.inner_text("#form-text") and "W_ik" in page.inner_text("#form-text")
    page.select_option("#form", "differential")
    assert "W dx" in page.inner_text("#form-text")


@pytest.mark.parametrize(("method", "heading"), [("chain", "intermediate variables"),
                                                  ("index", "the entry as a sum"),
                                                  ("differential", "identified")])
def test_the_steps_of_each_method_are_shown(page, method, heading):
    differentiate(page, "a^T x", "x")
    page.select_option("#steps-method", method)
    page.wait_for_selector('body[data-busy="false"]')
    page.wait_for_selector("#steps li.step")
    steps = page.inner_text("#steps")
    assert heading in steps, steps


def test_a_wrong_candidate_is_refuted_with_a_counterexample(page):
    differentiate(page, "x^T A x", "x")
    page.fill("#candidate", "2 A x")  # right only for a symmetric A
    page.click("#check")
    page.wait_for_selector("#verdict:not([hidden])")
    page.wait_for_selector('body[data-busy="false"]')
    assert page.locator("#verdict").get_attribute("data-verdict") == "wrong"
    assert page.locator("#counterexample").is_visible()
    assert page.inner_text("#counterexample").strip()


def test_a_proof_shows_its_progress_then_its_verdict(page):
    differentiate(page, "h1 = tanh(W1 x); h2 = tanh(W2 h1); L = sum(h2)", "W1")
    page.click("#verify")
    page.wait_for_selector('#verification[data-verified="true"]')
    progress = page.locator("#proof-progress")
    assert int(progress.get_attribute("data-seen") or 0) >= 1  # the streamed steps of the proof were shown
    assert progress.inner_text().startswith("proving: sizes ") and not progress.is_visible()
    assert page.inner_text("#verification").startswith("verified")


def test_a_right_candidate_is_accepted(page):
    differentiate(page, "x^T A x", "x")
    page.fill("#candidate", "A x + A^T x")
    page.click("#check")
    page.wait_for_selector("#verdict:not([hidden])")
    page.wait_for_selector('body[data-busy="false"]')
    assert page.locator("#verdict").get_attribute("data-verdict") == "correct"


def test_the_copied_numpy_code_runs_and_matches_central_differences(page):
    differentiate(page, "sum(tanh(W x))", "W")
    page.select_option("#code-backend", "numpy")
    page.wait_for_selector('#code[data-backend="numpy"]')
    page.wait_for_selector('body[data-busy="false"]')
    page.click("#copy")
    page.wait_for_selector('#copy[data-copied="true"]')
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == page.inner_text("#code")
    namespace: dict[str, Any] = {}
    exec(compile(copied, "<copied from the page>", "exec"), namespace)  # the page's code, not user input
    rng = np.random.default_rng(0)
    W, x = rng.normal(size=(3, 4)), rng.normal(size=4)
    got = np.asarray(namespace["df_dW"](W=W, x=x), dtype=float)  # one variable: the derivative's function
    step, expected = 1e-6, np.zeros_like(W)
    for index in np.ndindex(*W.shape):
        up, down = W.copy(), W.copy()
        up[index] += step
        down[index] -= step
        expected[index] = (np.tanh(up @ x).sum() - np.tanh(down @ x).sum()) / (2 * step)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-8)


def test_a_syntax_error_shows_the_caret_and_the_hint(page):
    differentiate(page, "x^T A +", "x")
    assert page.locator("#error").is_visible()
    assert not page.locator("#output").is_visible()  # no result shown beside the error
    assert "^" in page.inner_text("#error-caret")
    assert page.inner_text("#error-summary").strip()


@pytest.mark.parametrize(("name", "viewport"), [("phone", PHONE), ("desktop", DESKTOP)])
def test_screenshots_at_a_phone_and_a_desktop_width(browser, base_url, name, viewport):
    context = browser.new_context(viewport=viewport, device_scale_factor=1)
    page = context.new_page()
    page.goto(base_url)
    page.wait_for_selector('body[data-ready="true"]')
    differentiate(page, "h1 = tanh(W1 x); h2 = tanh(W2 h1); L = sum(h2)", "W1")
    page.select_option("#steps-method", "chain")
    page.wait_for_selector('body[data-busy="false"]')
    page.wait_for_selector("#steps li.step")
    # nothing wider than the screen: the page reflows to one column at a phone's width
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"page-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    context.close()
