"""Rendering a report (the JSON the reporting service answers) as table, json, csv, md or
html. Pure: text in, text out; the CLI prints it or writes it to a file, the gateway
answers it, the dashboard shows its sections and charts.

By concern: `values` (sections of one table each, how a value reads), `sections` (the
portfolio report's and a diff's, `scorecard` and `improvement` for the rest), `formats`
(the writers), `charts` (inline SVG). The public names are all importable from here:
`from shared import render; render.render(report, "md")`.
"""

from __future__ import annotations

from shared.render.charts import (
    PALETTE,
    SVG_NS,
    ZONE_FILL,
    accuracy_svg,
    bubble_svg,
    burn_svg,
    capacity_svg,
    charts_of,
    convergence_svg,
    heat_map_svg,
)
from shared.render.formats import (
    CSS,
    FORMATS,
    RAG_COLOURS,
    RENDERERS,
    print_report,
    render,
    rich_tables,
)
from shared.render.outlook import grid_svg, outlook_charts, s_curve_svg
from shared.render.sections import sections
from shared.render.values import (
    NUMERIC,
    RAG_HTML,
    Column,
    Section,
    pretty,
    raw,
    subtitle_of,
    title_of,
)

__all__ = [
    "CSS",
    "FORMATS",
    "NUMERIC",
    "PALETTE",
    "RAG_COLOURS",
    "RAG_HTML",
    "RENDERERS",
    "SVG_NS",
    "ZONE_FILL",
    "Column",
    "Section",
    "accuracy_svg",
    "bubble_svg",
    "burn_svg",
    "capacity_svg",
    "charts_of",
    "convergence_svg",
    "grid_svg",
    "heat_map_svg",
    "outlook_charts",
    "pretty",
    "print_report",
    "raw",
    "render",
    "rich_tables",
    "s_curve_svg",
    "sections",
    "subtitle_of",
    "title_of",
]
