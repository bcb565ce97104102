"""The dashboard in a real browser: Chromium from Debian (/usr/bin/chromium) driven by
Playwright, against `portfolio up` with the example portfolio imported. Every page loads,
its charts are drawn (SVG with shapes), and a command sent meanwhile shows up without a
reload.

Without /usr/bin/chromium the test is skipped, unless PORTFOLIO_REQUIRE_BROWSER=1 (CI),
which makes it a failure. PORTFOLIO_DASHBOARD_SCREENSHOT=docs/dashboard.png also writes
the overview's screenshot there (the README shows it)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tests.e2e.test_cli import Backend

EXAMPLES = Path(__file__).parents[2] / "examples"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Page -> (a text it shows, {chart id: the shape it must contain}).
PAGES = {
    "overview": (
        "CRM-2027",
        {"risk-heat-map": "rect", "budget-burn": "polyline", "value-vs-cost": "circle"}
        | {"capacity": "rect"},
    ),
    "ranking": ("Replace the legacy CRM", {"value-vs-cost": "circle"}),
    "risks": ("R-DATA-MIG", {"risk-heat-map": "rect"}),
    "budget": ("CAPEX-2027", {"budget-burn": "polyline"}),
    "capacity": ("developer", {"capacity": "rect"}),
    "alerts": ("over_allocation", {}),
    "audit": ("ObjectiveDefined", {}),
}


@pytest.fixture
def browser_path() -> Path:
    if CHROMIUM.exists():
        return CHROMIUM
    reason = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    if os.environ.get("PORTFOLIO_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason}, and PORTFOLIO_REQUIRE_BROWSER=1")
    pytest.skip(f"{reason}; set PORTFOLIO_REQUIRE_BROWSER=1 to make this a failure")


@pytest.fixture
def example_backend(tmp_path: Path) -> Iterator[Backend]:
    backend = Backend(tmp_path / "data")
    backend.env["PORTFOLIO_DASHBOARD_PORT"] = "0"
    backend.up()
    try:
        for name in ("portfolio.jsonl", "ledger_and_risks.jsonl"):
            done = backend.cli("import", str(EXAMPLES / name))
            assert done.returncode == 0, done.stdout + done.stderr
        yield backend
    finally:
        if backend.process is not None and backend.process.poll() is None:
            backend.down()


def charts_drawn(page: Page, charts: dict[str, str]) -> None:
    for chart_id, shape in charts.items():
        svg = page.locator(f"svg#{chart_id}")
        expect(svg).to_have_count(1)
        assert svg.locator(shape).count() > 0, (chart_id, shape)


def test_dashboard_in_a_browser(
    example_backend: Backend, browser_path: Path, tmp_path: Path
) -> None:
    runtime = json.loads((example_backend.data_dir / "runtime.json").read_text())
    base: str = runtime["dashboard_url"].rstrip("/")
    failures: list[str] = []
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(browser_path),
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            page = context.new_page()
            page.on("pageerror", lambda error: failures.append(str(error)))
            page.on(
                "console",
                lambda msg: failures.append(msg.text) if msg.type == "error" else None,
            )
            for name, (text, charts) in PAGES.items():
                response = page.goto(f"{base}/{name}")
                assert response is not None and response.status == 200, name
                expect(page.locator("#content")).to_contain_text(text)
                expect(page.locator("#live")).to_have_class("live ok")  # the stream is open
                charts_drawn(page, charts)

            page.goto(f"{base}/overview")
            expect(page.locator("#live")).to_have_class("live ok")
            shot = tmp_path / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
            if target := os.environ.get("PORTFOLIO_DASHBOARD_SCREENSHOT"):
                shutil.copyfile(shot, target)

            # A command through intake: the open page shows it, and was not reloaded.
            page.evaluate("window.notReloaded = true")
            sent = example_backend.cli(
                "send",
                "ProposeProject",
                "--data",
                json.dumps(
                    {
                        "project_id": "LIVE-1",
                        "name": "Seen live",
                        "sponsor": "cio",
                        "planned_start": "2027-06-01",
                        "planned_end": "2027-12-31",
                        "actor": "browser-test",
                    }
                ),
            )
            assert sent.returncode == 0, sent.stdout + sent.stderr
            expect(page.locator("#content")).to_contain_text("project/LIVE-1", timeout=10_000)
            expect(page.locator(".tile", has_text="projects").first).to_contain_text("41")
            assert page.evaluate("window.notReloaded") is True
            charts_drawn(page, PAGES["overview"][1])  # still drawn after the swap
            assert not failures, failures  # no script errors, no failed requests

            response = page.goto(f"{base}/nowhere")
            assert response is not None and response.status == 404
            expect(page.locator("#content")).to_contain_text("there is no page")
        finally:
            context.close()
    assert f"dashboard: {runtime['dashboard_url']}" in example_backend.down()
