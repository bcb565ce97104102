"""The data folder's lock and the per-user record of running backends (shared/runtime.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared import runtime
from shared.runtime import DataFolderInUse, DataFolderLock, Runtime


@pytest.fixture(autouse=True)
def state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(home))
    return home


def dead_pid() -> int:
    """The id of a process that has ended (and been reaped)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    return int(done.stdout)


def backend(data_dir: str, pid: int, minutes_ago: int = 0) -> Runtime:
    return Runtime(
        nats_url=f"nats://127.0.0.1:{4000 + pid % 1000}",
        data_dir=data_dir,
        supervisor_pid=pid,
        started_at=datetime.now(UTC) - timedelta(minutes=minutes_ago),
    )


def test_the_data_folder_is_held_by_one_at_a_time(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = DataFolderLock(data)
    first.acquire()
    (data / "runtime.json").write_text(backend(str(data), os.getpid()).model_dump_json())
    # flock belongs to an open file: a second opening in this very process is refused too.
    with pytest.raises(DataFolderInUse) as refused:
        DataFolderLock(data).acquire()
    assert refused.value.pid == os.getpid()
    assert refused.value.nats_url == backend(str(data), os.getpid()).nats_url
    assert f"pid {os.getpid()}" in str(refused.value)
    first.release()
    with DataFolderLock(data):  # free again once released
        assert json.loads((data / "portfolio.lock").read_text()) == {"pid": os.getpid()}


def test_a_holder_still_starting_is_named_without_a_stale_url(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    # A runtime file left by an earlier run that was killed: not the holder's.
    (data / "runtime.json").write_text(backend(str(data), dead_pid()).model_dump_json())
    with DataFolderLock(data), pytest.raises(DataFolderInUse) as refused:
        DataFolderLock(data).acquire()
    assert refused.value.nats_url is None and "still starting" in str(refused.value)


def test_the_lock_is_let_go_when_its_process_dies(tmp_path: Path) -> None:
    data = tmp_path / "data"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from shared.runtime import DataFolderLock;"
         f"lock = DataFolderLock(Path({str(data)!r})); lock.acquire(); print('held', flush=True);"
         "time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2],
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(DataFolderInUse, match=f"pid {holder.pid}"):
            DataFolderLock(data).acquire()
    finally:
        holder.kill()
        holder.wait()
    with DataFolderLock(data):
        pass


def test_the_state_file_lists_running_backends_only(tmp_path: Path, state_home: Path) -> None:
    mine = backend("/data/a", os.getpid(), minutes_ago=5)
    runtime.record(mine)
    runtime.record(backend("/data/gone", dead_pid()))
    assert runtime.state_file() == state_home / "portfolio" / "runtime.json"
    assert runtime.running() == [mine]
    # A parent process (alive) started later on another folder comes first.
    newer = backend("/data/b", os.getppid())
    runtime.record(newer)
    assert runtime.running() == [newer, mine]
    stored = json.loads(runtime.state_file().read_text())["backends"]
    assert set(stored) == {"/data/a", "/data/b"}  # the dead one went at the next write

    runtime.forget("/data/a", pid=12345)  # not the one that wrote it: kept
    assert runtime.running() == [newer, mine]
    runtime.forget("/data/a", pid=os.getpid())
    assert runtime.running() == [newer]


def test_an_unreadable_state_file_is_no_backend(state_home: Path) -> None:
    path = runtime.state_file()
    path.parent.mkdir(parents=True)
    for text in ("", "{oops", "[]", '{"backends": {"x": {"nats_url": 5}}}', '{"backends": 3}'):
        path.write_text(text)
        assert runtime.running() == []
    runtime.record(backend("/data/a", os.getpid()))  # and it is written over
    assert [r.data_dir for r in runtime.running()] == ["/data/a"]


def test_the_state_folder_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", "relative/path")  # ignored, as the spec says
    monkeypatch.setenv("HOME", str(tmp_path))
    assert runtime.state_dir() == tmp_path / ".local" / "state" / "portfolio"
    monkeypatch.delenv("XDG_STATE_HOME")
    assert runtime.state_dir() == tmp_path / ".local" / "state" / "portfolio"
