"""One way to write a figure (shared/formatting.py), nice chart ticks, the exports a
spreadsheet opens (xlsx, a folder of csv files), and no Python repr in any format."""

from __future__ import annotations

import csv
import io
import itertools
import math
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from openpyxl import load_workbook

from services.reporting import documents
from services.reporting.report import fold as fold_events
from shared import formatting, render
from shared.render import exports
from shared.render.charts import Labels, nice_ticks
from tests.unit.test_report import NOW, build


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return documents.portfolio(fold_events(build().events), NOW)


def test_money_reads_one_way() -> None:
    for value in (9000000, "9000000", "9000000.00", Decimal("9000000.004"), 9000000.0):
        assert formatting.money_text(value) == "9,000,000"
        assert formatting.money_json(value) == "9000000.00"
    assert formatting.money_text("758000.5", "EUR") == "EUR 758,001"
    assert formatting.money_json("3333333.333333") == "3333333.33"
    assert formatting.money_text(None) == formatting.money_text("") == "n/a"


def test_ratios_percentages_and_undefined() -> None:
    cpi = Decimal("1.176470588235294117647058824")  # as the risk monitor computes it
    assert formatting.ratio_json(cpi) == "1.1765" and formatting.ratio_text(cpi) == "1.176"
    assert formatting.ratio_text(None) == formatting.percent_text(None) == "n/a"
    assert formatting.percent_text("157.6") == "158%"
    assert formatting.number_text("1250") == "1,250" and formatting.number_text("2.5") == "2.5"
    assert formatting.ratio_json("NaN") is None and formatting.money_json("oops") is None


def test_text_of_never_writes_a_repr() -> None:
    weights = {"value": 0.3333333333333333, "cost": 0.5, "tags": ["a", "b"], "x": None}
    text = formatting.text_of(weights)
    assert text == "value: 0.3333; cost: 0.5; tags: a, b; x: n/a"
    assert "{" not in text and "[" not in text and "None" not in text


def test_tidy_json_fixes_the_scale_by_key() -> None:
    answer = {
        "health": {"P1": {"earned_value": {"cpi": "1.176470588235294117647058824", "ac": "5"}}},
        "points": [{"budget": "3333333.333333", "cost": 1000, "score": 0.123456789, "rank": 1}],
        "risk": {"score": 20, "message": "CPI 0.8"},
    }
    tidy = formatting.tidy_json(answer)
    assert tidy["health"]["P1"]["earned_value"] == {"cpi": "1.1765", "ac": "5.00"}
    point = tidy["points"][0]
    assert point["budget"] == "3333333.33" and point["cost"] == 1000  # whole numbers stay
    assert point["score"] == 0.1235 and point["rank"] == 1
    assert tidy["risk"] == {"score": 20, "message": "CPI 0.8"}
    assert formatting.tidy_json(tidy) == tidy


def test_earned_value_carries_every_figure_under_one_name() -> None:
    found = formatting.earned_value_json({"cpi": Decimal("0.96"), "bac": 120000})
    assert found is not None and list(found) == list(formatting.EARNED_VALUE)
    assert found["cpi"] == "0.9600" and found["bac"] == "120000.00" and found["tcpi"] is None
    assert formatting.earned_value_json(None) is None


@given(st.floats(min_value=1e-6, max_value=1e12, allow_nan=False))
def test_ticks_step_one_two_or_five_and_cover_the_data(high: float) -> None:
    ticks = nice_ticks(high)
    assert ticks[0] == 0 and ticks[-1] >= high * (1 - 1e-9) and 2 <= len(ticks) <= 7
    step = ticks[1] - ticks[0]
    mantissa = step / 10 ** math.floor(math.log10(step) + 1e-9)
    assert round(mantissa, 6) in (1, 2, 5)
    assert all(math.isclose(b - a, step, rel_tol=1e-6) for a, b in itertools.pairwise(ticks))


def test_labels_that_would_overlap_are_left_out() -> None:
    labels = Labels()
    assert labels.fits(100, 100, "CRM-2027")
    assert not labels.fits(104, 102, "API-GW")  # on top of the first
    assert labels.fits(100, 130, "API-GW")  # a line below


def test_charts_tick_nicely_with_a_legend_for_every_series(report: dict[str, Any]) -> None:
    html = render.render(report, "html")
    burn = html[html.index('<svg id="budget-burn"') :]
    burn = burn[: burn.index("</svg>")]
    assert "allocated</text>" in burn and "actual</text>" in burn  # both series named
    bubble = html[html.index('<svg id="value-vs-cost"') :]
    assert "bubble: value" in bubble[: bubble.index("</svg>")]
    for tick in ("4.62M", "158%"):
        assert tick not in html


def test_no_format_writes_a_python_repr(report: dict[str, Any]) -> None:
    for fmt in ("table", "md", "html", "csv"):
        text = render.render(report, fmt)
        assert "None" not in text and "{'" not in text and "['" not in text, fmt


def test_csv_export_is_one_file_per_table(report: dict[str, Any], tmp_path: Path) -> None:
    written = exports.write_csv_dir(report, tmp_path / "out")
    names = {p.name for p in written}
    assert {"overview.csv", "budget.csv", "risks.csv", "health.csv"} <= names
    assert len(names) == len(render.sections(report))
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / "budget.csv").read_text())))
    assert rows[0]["pool"] == "CAPEX-27" and "190000.00" in rows[0].values()
    for path in written:  # every file a plain table: one header, equal row lengths
        table = list(csv.reader(io.StringIO(path.read_text())))
        assert len({len(row) for row in table}) == 1, path.name


def test_xlsx_has_a_sheet_per_table_with_numbers_as_numbers(
    report: dict[str, Any], tmp_path: Path
) -> None:
    path = tmp_path / "report.xlsx"
    path.write_bytes(exports.xlsx_bytes(report))
    book = load_workbook(path)
    sections = render.sections(report)
    assert book.sheetnames[0] == "report" and len(book.sheetnames) == 1 + len(sections)
    budget = book["budget"]
    header = [c.value for c in budget[1]]
    allocated = header.index("allocated") + 1
    cell = budget.cell(row=2, column=allocated)
    [section] = [x for x in sections if x.name == "budget"]
    expected = section.rows[0][[c.name for c in section.columns].index("allocated")]
    assert isinstance(cell.value, int | float) and cell.value == float(expected)
    assert cell.number_format == "#,##0.00"
    assert budget.cell(row=2, column=1).value == "CAPEX-27"


def test_the_ahp_refusal_gives_its_cr_as_a_field_not_only_in_the_message() -> None:
    from datetime import UTC, datetime

    from contracts import prioritization as pr
    from domain.kernel import Rejected
    from domain.prioritization.models import decide_model

    command = pr.ConfigureScoringModel.model_validate(
        {
            "method": "ahp",
            "rationale": "intransitive on purpose",
            "ahp_criteria": ["value", "cost", "risk"],
            "ahp_matrix": [[1, 9, 1 / 9], [1 / 9, 1, 9], [9, 1 / 9, 1]],
        }
    )
    with pytest.raises(Rejected) as caught:
        decide_model(command, None, datetime.now(UTC), {})
    [detail] = caught.value.details
    assert detail.field == "ahp_matrix" and isinstance(detail.input, dict)
    cr = detail.input["consistency_ratio"]
    assert cr >= detail.input["max_consistency_ratio"] == 0.10
    assert f"CR = {cr:.4f}" in caught.value.message
    assert set(detail.input) >= {"lambda_max", "consistency_index"}
