"""The dashboard in a real browser: headless Chromium (Debian's `chromium`, which `.ci/run`
installs) driven by Playwright with ``executable_path`` set, against a real `reconcile serve`
subprocess over the shipped example applied by real `reconcile` runs.

Where no Chromium is installed these tests say so and skip; under ``CI=true`` a missing
browser is a failure. Each page visited is saved as a screenshot in the artifact folder
(``RECONCILE_TEST_ARTIFACTS``, default ``test-artifacts/`` at the top of the repository).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dashboard_kit import (
    SECRET,
    USER,
    Example,
    Server,
    add_image,
    applied_example,
    conflict_on_cdn,
    users_file,
)

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("RECONCILE_TEST_ARTIFACTS", REPO / "test-artifacts"))
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = [  # as root, with no network: no sandbox, no background connections
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
SCRIPT = "<script>alert('owned')</script>"


def chromium() -> str | None:
    given = os.environ.get("RECONCILE_CHROMIUM")
    if given:
        return given
    return next((found for name in BROWSERS if (found := shutil.which(name))), None)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    path = chromium()
    if path is None:
        message = (
            "no Chromium found (apt install chromium, or set RECONCILE_CHROMIUM): the "
            "browser tests of the dashboard did not run"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=path, args=FLAGS, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    dialogs: list[str] = []
    opened.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    opened.dialogs = dialogs
    yield opened
    context.close()


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(page: Any, server: Server) -> None:
    page.goto(server.url + "/")
    assert page.url.startswith(server.url + "/login")
    page.fill("input[name=name]", USER)
    page.fill("input[name=secret]", SECRET)
    page.click("form.login button")
    page.wait_for_url(server.url + "/")


@pytest.fixture
def example(tmp_path: Path) -> Example:
    return applied_example(tmp_path, title=SCRIPT)


@pytest.fixture
def server(example: Example) -> Iterator[Server]:
    started = Server(example, "--auth-file", str(users_file(example.root)))
    yield started
    started.stop()


def test_the_dashboard_shows_what_reconcile_status_says(page: Any, example: Example) -> None:
    server = Server(example)  # loopback, no users file: read-only, open
    try:
        page.goto(server.url + "/")
        shot(page, "dashboard")
        expected = example.report("status")["platforms"]
        cards = page.locator("section.card")
        assert cards.count() == len(expected) == 6
        for platform in expected:
            card = page.locator(f'section.card[data-platform="{platform["platform_code"]}"]')
            assert platform["platform_name"] in card.locator("h2").inner_text()
            for field in ("synced_assets", "up_to_date", "outdated", "in_progress", "failed",
                          "conflicts"):  # fmt: skip
                shown = card.locator(f'dd[data-field="{field}"]').inner_text()
                assert shown == str(platform[field]), (platform["platform_code"], field)
        assert page.locator("svg.chart rect.ok").count() > 0
        for name, path in (("distribution", "/assets"), ("events", "/events"), ("plan", "/plan")):
            page.goto(server.url + path)
            shot(page, name)
        assert page.locator("table#plan").inner_text().count("No changes to make.") == 1
    finally:
        server.stop()


def test_the_hero_image_page_shows_its_thumbnail_and_three_copies(
    page: Any, server: Server
) -> None:
    sign_in(page, server)
    page.goto(server.url + "/assets/IMG-HERO-PROD")
    thumb = page.locator("img.thumb")
    thumb.wait_for()
    page.wait_for_function("document.querySelector('img.thumb').complete")
    assert page.evaluate("document.querySelector('img.thumb').naturalWidth") > 0
    rows = page.locator("table#placements tbody tr[data-platform]")
    assert sorted(rows.nth(i).get_attribute("data-platform") for i in range(rows.count())) == [
        "CDN-PRIMARY", "S3-BACKUP", "SOCIAL-MEDIA",
    ]  # fmt: skip
    assert "IMG-HERO-PROD: " in page.locator("pre.explain").inner_text()
    shot(page, "asset")


def test_a_title_with_a_script_stays_text(page: Any, server: Server) -> None:
    sign_in(page, server)
    for path in ("/assets", "/assets/IMG-HERO-PROD"):
        page.goto(server.url + path)
        assert SCRIPT in page.locator("main").inner_text()
        assert page.locator("main script").count() == 0
    page.wait_for_timeout(300)
    assert page.dialogs == []


def test_a_conflict_is_resolved_in_the_browser_and_the_next_reconcile_resyncs_it(
    page: Any, example: Example, server: Server
) -> None:
    sent = example.copy_on_cdn("media/images/hero_product.jpg").read_bytes()
    conflict = conflict_on_cdn(example)
    sign_in(page, server)
    page.goto(server.url + "/conflicts")
    row = page.locator(f'tr[data-conflict="{conflict}"]')
    assert "remote_modified" in row.inner_text()
    shot(page, "conflicts")
    row.locator("select[name=use]").select_option("source")
    row.locator("input[name=note]").fill("edited on the CDN by hand")
    row.locator("button").click()
    page.wait_for_url(server.url + "/conflicts?all=1")
    assert "use_source" in page.locator(f'tr[data-conflict="{conflict}"]').inner_text()
    (recorded,) = [
        c for c in example.report("conflicts", "--all")["conflicts"] if c["id"] == conflict
    ]
    assert (recorded["resolution"], recorded["resolved_by"]) == ("use_source", USER)
    example.run()
    assert example.copy_on_cdn("media/images/hero_product.jpg").read_bytes() == sent
    page.goto(server.url + "/assets/IMG-HERO-PROD")
    cdn = page.locator('table#placements tr[data-platform="CDN-PRIMARY"]').inner_text()
    assert "synced" in cdn and "conflict" not in cdn


def test_a_request_without_the_csrf_token_is_refused(
    page: Any, example: Example, server: Server
) -> None:
    conflict = conflict_on_cdn(example)
    sign_in(page, server)
    page.goto(server.url + "/conflicts")
    statuses = page.evaluate(
        """async (id) => {
            const form = new URLSearchParams({use: "ignore"});
            const a = await fetch(`/conflicts/${id}/resolve`, {method: "POST", body: form});
            const b = await fetch(`/api/conflicts/${id}/resolve`, {
                method: "POST", body: JSON.stringify({use: "ignore"}),
                headers: {"content-type": "application/json"}});
            const c = await fetch(`/api/conflicts/${id}/resolve`, {
                method: "POST", body: JSON.stringify({use: "ignore"}),
                headers: {"content-type": "application/json", "x-csrf-token": "forged"}});
            return [a.status, b.status, c.status];
        }""",
        conflict,
    )
    assert statuses == [403, 403, 403]
    assert example.report("conflicts")["conflicts"][0]["resolution"] == "pending"
    anonymous = page.context.browser.new_context()
    try:
        other = anonymous.new_page()
        other.goto(server.url + "/api/status")
        assert "sign in first" in other.content()
    finally:
        anonymous.close()


def test_a_job_appears_live_while_reconcile_watch_works(page: Any, example: Example) -> None:
    server = Server(example)
    watch = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "watch", *example.args(), "--debounce", "0.2"],
        cwd=example.root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        page.goto(server.url + "/jobs")
        page.evaluate("window.notReloaded = true")
        before = page.locator("table#jobs tbody tr[data-job]").count()
        time.sleep(1.5)  # the watch has started and settled
        add_image(example, "IMG-LIVE-1")
        page.wait_for_function(
            """(n) => [...document.querySelectorAll('table#jobs tbody tr[data-job]')]
                  .filter(r => r.textContent.includes('IMG-LIVE-1')).length > 0""",
            arg=before,
            timeout=60_000,
        )
        assert page.locator("table#jobs tbody tr[data-job]").count() > before
        assert page.evaluate("window.notReloaded") is True  # the table changed in place
        shot(page, "jobs-live")
    finally:
        watch.terminate()
        watch.wait(timeout=20)
        server.stop()
