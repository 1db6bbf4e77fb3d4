"""The status page in a real browser (Debian's Chromium driven by Playwright) against a real gateway
process with scripted traffic: the login form, the key kept out of the URL and cookies, the figures
shown equal the traffic sent, the charts drawn, the ranges, a model name made of markup staying text,
and a screenshot (STATUS_SCREENSHOT=docs/status-page.png to refresh the README's).

Without Chromium or Playwright the test skips, except under CI=true, where it fails: .ci/run
installs both."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from anthropic_gateway.auth import key_label
from conftest import GatewayProcess, SpawnGateway
from fake_upstream import FakeUpstream, Reply, completion, usage
from status.test_data import ADMIN, ENV, HAIKU_COST, KEY_A, KEY_B, SONNET_COST, ask, send_traffic, settled

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # skipped (or failed under CI) in the fixture
    expect = sync_playwright = None  # type: ignore[assignment]

CHROMIUM = "/usr/bin/chromium"
XSS = "<img src=x onerror=alert(1)>"
CI = os.environ.get("CI") == "true"


def _unavailable(why: str) -> None:
    if CI:
        pytest.fail(f"CI=true: the browser test must run, but {why}")
    pytest.skip(why)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if sync_playwright is None:
        _unavailable("playwright is not installed (pip install -e '.[dev]')")
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        _unavailable(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    with sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        except Exception as err:
            _unavailable(f"Chromium does not start: {err}")
        yield b
        b.close()


@pytest.fixture
def served(spawn_gateway: SpawnGateway, upstream: FakeUpstream) -> GatewayProcess:
    gw = spawn_gateway({**ENV, "ANTHROPIC_GATEWAY_PASSTHROUGH_MODELS": "true"})
    send_traffic(gw, upstream)
    upstream.expect(Reply.json(completion("x", usage_=usage(7, 3))))
    ask(gw, KEY_A, XSS)  # a client may name any model: the page must show it as text
    settled(gw, 6)
    return gw


def test_the_page_shows_the_traffic_sent(browser: Any, served: GatewayProcess, tmp_path: Path) -> None:
    context = browser.new_context(viewport={"width": 1440, "height": 1100})
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" and "401" not in m.text
            and "403" not in m.text else None)  # fmt: skip
    url = served.url + "/status"
    page.goto(url)

    # The login form: a refused key says why and is forgotten; the admin key opens the page.
    page.wait_for_selector("#login:not([hidden])")
    assert page.is_hidden("#main")
    page.fill("#key", KEY_A)
    page.press("#key", "Enter")
    expect(page.locator("#login-error")).not_to_be_empty()  # (wait_for_function would need eval: the CSP says no)
    assert "admin key" in page.text_content("#login-error")
    assert page.evaluate("sessionStorage.length") == 0
    page.fill("#key", ADMIN)
    page.click("#login button[type=submit]")
    page.wait_for_selector("body[data-loaded]")
    page.wait_for_selector("#c-requests[data-points='89'] path")

    # No key in the URL, a cookie or local storage: only this tab's session storage holds it.
    assert page.url == url
    assert page.evaluate("document.cookie") == "" and context.cookies() == []
    assert page.evaluate("localStorage.length") == 0
    assert page.evaluate("sessionStorage.getItem('anthropic-gateway-admin-key')") == ADMIN
    assert ADMIN not in page.content()

    # The figures equal the traffic: 6 requests (4 answered, an upstream 400, a bad key's 401).
    text = page.text_content
    assert text("#t-requests") == "6 requests"
    assert text("#t-errors").startswith("2 errors (33.3%)") and "4xx 2 · 5xx 0" in text("#t-errors")
    assert text("#t-inflight") == "0" and text("#t-streams") == "0 streams"
    total = SONNET_COST + HAIKU_COST
    assert text("#t-today") == f"${total:.4f}" and text("#t-today-requests").startswith("5 requests ")
    assert text("#t-cost") == f"${total:.4f} in this range"
    cache_share = 300 / (1457 + 300 + 50) * 100
    assert text("#t-share").startswith(f"cache-read share {cache_share:.1f}%")
    rows = page.locator("#recent tbody tr")
    assert rows.count() == 6
    models = page.locator("#recent tbody tr td:nth-child(3)").all_text_contents()
    assert models == [XSS, "–", "claude-sonnet-5", "claude-sonnet-5", "claude-haiku-4-5", "claude-sonnet-5"]
    statuses = page.locator("#recent tbody tr td:nth-child(4)").all_text_contents()
    assert statuses == ["200", "401", "400", "200", "200", "200"]
    by_key = dict(zip(page.locator("#keys tbody td:nth-child(1)").all_text_contents(),
                      page.locator("#keys tbody td:nth-child(4)").all_text_contents(), strict=True))  # fmt: skip
    assert by_key == {key_label("key", KEY_A): "3", key_label("key", KEY_B): "2"}
    by_model = page.locator("#models tbody td:nth-child(1)").all_text_contents()
    assert sorted(by_model) == sorted(["claude-sonnet-5", "claude-haiku-4-5", XSS])
    assert page.locator("#backends tbody td").first.text_content() == "default"

    # Markup from a client stays text: no element made of it, no script run.
    assert page.locator("img").count() == 0
    assert dialogs == []

    # The charts: one path per series, drawn from the data.
    assert page.locator("#c-requests path").count() == 3 and page.locator("#c-latency path").count() == 4
    assert page.locator("#l-tokens span").all_text_contents() == ["input", "output", "cache read", "cache write"]

    timing = page.evaluate("""() => {
        const nav = performance.getEntriesByType('navigation')[0];
        const shown = performance.getEntriesByName('status-rendered')[0];
        return {load: nav.loadEventEnd, rendered: shown ? shown.startTime : null,
                bytes: performance.getEntriesByType('resource').concat([nav]).reduce((n, e) => n + e.encodedBodySize, 0)};
    }""")
    assert timing["load"] > 0 and timing["rendered"] is not None
    shot = Path(os.environ.get("STATUS_SCREENSHOT") or tmp_path / "status-page.png")
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000

    # 24 hours: from the ledger, which holds model requests (not the 401).
    page.click("#ranges button[data-range='24h']")
    expect(page.locator("#updated")).to_contain_text("from the ledger")
    assert text("#t-requests") == "5 requests"
    page.wait_for_selector("#c-requests[data-points='95']")

    # Signing out forgets the key.
    page.click("#signout")
    page.wait_for_selector("#login:not([hidden])")
    assert page.evaluate("sessionStorage.length") == 0
    assert problems == []
    context.close()


def test_an_open_gateway_needs_no_login(browser: Any, spawn_gateway: SpawnGateway, upstream: FakeUpstream) -> None:
    env = {k: v for k, v in ENV.items() if k not in ("ANTHROPIC_GATEWAY_API_KEYS", "ANTHROPIC_GATEWAY_ADMIN_KEYS")}
    gw = spawn_gateway(env)
    upstream.expect(Reply.json(completion("a", usage_=usage(10, 2))))
    ask(gw, "any", "claude-sonnet-5")
    settled(gw, 1)
    page = browser.new_page()
    page.goto(gw.url + "/status")
    page.wait_for_selector("body[data-loaded]")
    assert page.is_hidden("#login") and page.is_hidden("#signout")
    assert page.text_content("#t-requests") == "1 requests"
    page.close()
