"""The dashboard in a real browser: Chromium from Debian (/usr/bin/chromium) driven by
Playwright, against `portfolio up` with the example portfolio imported. Every page loads,
its charts are drawn (SVG with shapes), and a command sent meanwhile shows up without a
reload. The drill-downs are clicked through: a bubble of the value vs cost chart to its
project's scorecard, a heat-map cell to its risks, an alert to its project, a roadmap row
to its scorecard.

Without /usr/bin/chromium the test is skipped, unless PORTFOLIO_REQUIRE_BROWSER=1 (CI),
which makes it a failure. PORTFOLIO_DASHBOARD_SCREENSHOTS=docs also writes a screenshot of
every page there (`dashboard-<page>.png`, the overview as `dashboard.png`; the README
shows them)."""

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
    "projects": ("Replace the legacy CRM", {}),
    "roadmap": ("Forecast to finish late", {"roadmap": "rect.baseline"}),
    "ranking": ("Replace the legacy CRM", {"value-vs-cost": "circle"}),
    "risks": ("R-DATA-MIG", {"risk-heat-map": "rect"}),
    "budget": ("CAPEX-2027", {"budget-burn": "polyline"}),
    "capacity": ("developer", {"capacity": "rect"}),
    "forecast": ("reserve needed at P80", {"forecast-s-curve": "polyline.s-curve"}),
    "stakeholders": ("communication plans", {"stakeholder-grid": "rect"}),
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
        # Every page reads a projection: wait until each has the whole log.
        end = max(s["log_position"] for s in backend.json("status").values() if s)
        backend.wait_until(lambda: backend.caught_up(end), "projections caught up")
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
            shots = os.environ.get("PORTFOLIO_DASHBOARD_SCREENSHOTS")
            for name, (text, charts) in PAGES.items():
                response = page.goto(f"{base}/{name}")
                assert response is not None and response.status == 200, name
                expect(page.locator("#content")).to_contain_text(text)
                expect(page.locator("#live")).to_have_class("live ok")  # the stream is open
                charts_drawn(page, charts)
                content = page.locator("#content").inner_text()
                for repr_mark in ("{'", "['", "None"):
                    assert repr_mark not in content, (name, repr_mark)
                if shots and name != "overview":  # the overview: dashboard.png, below
                    page.screenshot(path=f"{shots}/dashboard-{name}.png", full_page=True)

            # Drill-downs. A bubble of the ranking chart: its project's scorecard.
            page.goto(f"{base}/overview")
            bubble = page.locator("svg#value-vs-cost a").first
            href = bubble.get_attribute("href")
            assert href is not None and href.startswith("/projects?project=")
            bubble.locator("circle").dispatch_event("click")
            page.wait_for_url(f"**{href}")
            expect(page.locator("#content")).to_contain_text("Decision history")
            # A heat-map cell with open risks: those risks, only.
            page.goto(f"{base}/risks")
            cell = page.locator("svg#risk-heat-map a").first
            target = cell.get_attribute("href")
            assert target is not None and "probability=" in target
            cell.locator("rect").dispatch_event("click")
            page.wait_for_url(f"**{target}")
            expect(page.locator("#content")).to_contain_text("Open risks with probability")
            assert page.locator("#content table").first.locator("tbody tr").count() >= 1
            # An alert: its project.
            page.goto(f"{base}/alerts")
            link = page.locator("#content td a[href^='/projects?project=']").first
            project = link.inner_text()
            link.click()
            page.wait_for_url("**/projects?project=*")
            expect(page.locator("#content h2").first).to_contain_text(project)
            # A roadmap row: its scorecard.
            page.goto(f"{base}/roadmap")
            row = page.locator("svg#roadmap a").first
            row.locator("rect.forecast").dispatch_event("click")
            page.wait_for_url("**/projects?project=*")
            expect(page.locator("#content")).to_contain_text("Decision history")

            page.goto(f"{base}/overview")
            expect(page.locator("#live")).to_have_class("live ok")
            shot = tmp_path / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
            if shots:
                shutil.copyfile(shot, f"{shots}/dashboard.png")

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

            # A project that does not exist: 400 with the reason.
            response = page.goto(f"{base}/projects?project=NOPE")
            assert response is not None and response.status == 400
            expect(page.locator("#content")).to_contain_text("no such project")
            response = page.goto(f"{base}/nowhere")
            assert response is not None and response.status == 404
            expect(page.locator("#content")).to_contain_text("there is no page")
        finally:
            context.close()
    assert f"dashboard: {runtime['dashboard_url']}" in example_backend.down()
