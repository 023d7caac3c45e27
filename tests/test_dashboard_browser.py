"""The dashboard in a real browser: Debian's Chromium, headless, driven by Playwright.

A consumer signs in by pasting the signature of the page's challenge, finds a running workflow,
follows its first stage's log as lines arrive, and watches the workflow's page change by itself
when the workflow is stopped. With ``C2D_DASHBOARD_SCREENSHOTS=DIR`` the main pages are saved there
(docs/dashboard/ holds the committed ones). Skips without Chromium or Playwright, except under CI.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from c2d import auth
from c2d.client import Client
from dashboard_client import ENV, STUB_ENVIRONMENTS, endless, sign
from nodeproc import NodeProcess, running_node

CHROMIUM = "/usr/bin/chromium"
# Headless as root, with nothing that reaches for the network on its own (it is closed here).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 60_000  # for a state to be reached; nothing here asserts how fast

pytestmark = pytest.mark.timeout(300)


def _unavailable() -> str | None:
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        return "chromium is not installed (bash scripts/setup-dev installs it as root)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -r requirements-dev.txt)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    problem = _unavailable()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"CI runs the browser tests: {problem}")
        pytest.skip(problem)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
            args=CHROMIUM_ARGS,
            headless=True,
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    env = {"C2D_ENGINES__EXTERNAL_STUB__ENVIRONMENTS": STUB_ENVIRONMENTS}
    with running_node(tmp_path_factory.mktemp("node"), env=env) as node:
        node.wait_environment(ENV)
        yield node


def screenshot(page: Any, name: str) -> None:
    folder = os.environ.get("C2D_DASHBOARD_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def sign_in(page: Any, base: str, key: str) -> None:
    """Signs in as a person would: reads the challenge off the page, pastes its signature."""
    page.goto(f"{base}/")
    assert page.url == f"{base}/login"
    challenge = page.locator("#challenge").text_content()
    screenshot(page, "sign-in")
    page.fill("#signature", sign(challenge, key))
    page.click("#login button[type=submit]")
    page.wait_for_url(f"{base}/")


def test_a_consumer_signs_in_follows_a_log_and_sees_the_workflow_change(
    browser: Any, node: NodeProcess
) -> None:
    from playwright.sync_api import expect

    base = f"http://{node.http_address()}/dashboard"
    key = auth.new_private_key()
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    errors: list[str] = []
    with Client(node.address, key) as client:
        started = client.start(endless(extra_stages=1), free=True)
        try:
            page = context.new_page()
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            sign_in(page, base, key)
            expect(page.locator("#signed-in")).to_have_text(auth.address_of(key))

            # The overview lists the running stage and the workflow; its link opens the graph.
            expect(page.locator("#active")).to_contain_text("running", timeout=WAIT_MS)
            screenshot(page, "overview")
            page.click(f"#workflows a[href='/dashboard/workflows/{started.workflow_id}']")
            first = page.locator(f"[data-status='{started.job_ids[0]}']")
            expect(first).to_have_text("running", timeout=WAIT_MS)
            expect(page.locator("#graph .box")).to_have_count(2)
            expect(page.locator("#graph .box.active")).to_contain_text("running")
            screenshot(page, "workflow")

            # The log page follows the log while the stage runs.
            workflow_page = page
            log_page = context.new_page()
            log_page.on("pageerror", lambda error: errors.append(str(error)))
            log_page.goto(f"{base}/jobs/{started.job_ids[0]}/log")
            expect(log_page.locator("#log")).to_contain_text("line 3", timeout=WAIT_MS)
            expect(log_page.locator("#log-state")).to_have_text("following the log…")
            screenshot(log_page, "log")
        finally:
            client.stop(workflow_id=started.workflow_id)

        # Without a reload, both pages see the end: the workflow page by refreshing itself, the log
        # page by reading to the log's end.
        expect(first).to_have_text("stopped", timeout=WAIT_MS)
        expect(workflow_page.locator("#graph .box.stopped")).to_have_count(2, timeout=WAIT_MS)
        expect(log_page.locator("#log-state")).to_have_text(
            "the stage has ended: this is the whole log", timeout=WAIT_MS
        )
        text = log_page.locator("#log").text_content()
        assert text.startswith("line 0\nline 1\nline 2\nline 3\n")
    context.close()
    assert errors == [], errors  # no script error, nothing the CSP refused


def test_another_consumers_workflow_is_not_found_in_the_browser(browser: Any, node: NodeProcess) -> None:
    base = f"http://{node.http_address()}/dashboard"
    owner, stranger = auth.new_private_key(), auth.new_private_key()
    with Client(node.address, owner) as client:
        started = client.start(endless(), free=True)
        client.stop(workflow_id=started.workflow_id)
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, base, stranger)
    reply = page.goto(f"{base}/workflows/{started.workflow_id}")
    assert reply is not None and reply.status == 404
    assert started.workflow_id not in page.content()
    context.close()
