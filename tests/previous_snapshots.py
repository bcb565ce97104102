"""Snapshots as the previous version stored them, for the tests that open them."""

from __future__ import annotations

from collections.abc import Collection, Hashable, Mapping

import pytest

from services.reporting import snapshot_tables
from services.reporting.report import PortfolioReport
from services.reporting.snapshot_tables import Chunked, Split, TableLayout


def store_chunks_as_the_first_version(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on, chunks in one group of a project's five tables (FIRST_GROUPS), each
    `Chunked` without the `group` field: what the first chunked snapshots pickled."""
    real = snapshot_tables.split

    def first_version(
        report: PortfolioReport,
        layouts: Mapping[str, TableLayout],
        touched: Collection[Hashable] = (),
    ) -> Split:
        with monkeypatch.context() as before:
            before.setattr(snapshot_tables, "GROUPS", snapshot_tables.FIRST_GROUPS)
            cut = real(report, layouts, touched)
        for group in snapshot_tables.FIRST_GROUPS:
            for path in group:
                placeholder = snapshot_tables._get(cut.report, path)
                if isinstance(placeholder, Chunked):
                    old = object.__new__(Chunked)
                    fields = {k: v for k, v in vars(placeholder).items() if k != "group"}
                    vars(old).update(fields)
                    cut.report = snapshot_tables._with(cut.report, path, old)
        return cut

    monkeypatch.setattr(snapshot_tables, "split", first_version)
