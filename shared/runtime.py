"""Where a running backend is found, and the one-backend-per-data-folder lock.

`portfolio up` holds an exclusive `flock` on `<data>/portfolio.lock` for as long as it
runs (the kernel lets go of it when the process ends, however it ends), so a second `up`
on the same folder is refused instead of starting a second nats-server on the same store.
While it runs it records itself twice: in `<data>/runtime.json` and in a per-user state
file, `$XDG_STATE_HOME/portfolio/runtime.json` (default `~/.local/state/portfolio/`), one
entry per data folder, so the CLI finds it from any folder. An entry whose supervisor is
no longer alive is ignored (and dropped at the next write); an entry is only ever removed
by the supervisor that wrote it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, ConfigDict, ValidationError

from shared.settings import RUNTIME_FILE

LOCK_FILE = "portfolio.lock"


class Runtime(BaseModel):
    """One running backend, as `portfolio up` records it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    nats_url: str
    data_dir: str
    supervisor_pid: int
    started_at: datetime
    dashboard_url: str | None = None
    services: dict[str, int | None] = {}


def alive(pid: int) -> bool:
    """Whether a process with this id exists (one of another user's counts too)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- the data folder --------------------------------------------------------------------


class DataFolderInUse(Exception):
    """Another `portfolio up` holds the data folder."""

    def __init__(self, data_dir: Path, pid: int | None, nats_url: str | None) -> None:
        self.data_dir, self.pid, self.nats_url = data_dir, pid, nats_url
        who = f"pid {pid}" if pid else "another process"
        where = f", NATS {nats_url}" if nats_url else " (still starting)"
        super().__init__(f"{data_dir} is in use by a running `portfolio up` ({who}{where})")


class DataFolderLock:
    """An exclusive, non-blocking `flock` on `<data>/portfolio.lock`; the file keeps the
    holder's pid so that the refused can name it. The file is never deleted: a process that
    opened it before a deletion would lock a file nobody else sees."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / LOCK_FILE
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            text = handle.read()
            handle.close()
            raise self._in_use(text) from None
        except BaseException:
            handle.close()
            raise
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid()}))
        handle.flush()
        self._file = handle

    def _in_use(self, text: str) -> DataFolderInUse:
        pid: int | None = None
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            pid = int(json.loads(text)["pid"])
        found = read_runtime(self.data_dir / RUNTIME_FILE)
        url = found.nats_url if found is not None and found.supervisor_pid == pid else None
        return DataFolderInUse(self.data_dir, pid, url)

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def __enter__(self) -> DataFolderLock:
        self.acquire()
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


def read_runtime(path: Path) -> Runtime | None:
    """The backend recorded in a data folder's runtime file, if the file is readable."""
    try:
        return Runtime.model_validate_json(path.read_bytes())
    except (OSError, ValidationError):
        return None


def write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


# --- the per-user state file ------------------------------------------------------------


def state_dir() -> Path:
    """`$XDG_STATE_HOME/portfolio`, else `~/.local/state/portfolio` (a relative
    XDG_STATE_HOME is ignored, as the XDG spec says)."""
    base = os.environ.get("XDG_STATE_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".local" / "state"
    return root / "portfolio"


def state_file() -> Path:
    return state_dir() / RUNTIME_FILE


@contextlib.contextmanager
def _state_locked() -> Iterator[Path]:
    """Read-modify-write of the state file, one writer at a time."""
    folder = state_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    with (folder / "runtime.lock").open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield folder / RUNTIME_FILE
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _entries(path: Path) -> dict[str, Runtime]:
    try:
        raw: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    backends = raw.get("backends") if isinstance(raw, dict) else None
    found: dict[str, Runtime] = {}
    if not isinstance(backends, dict):
        return found
    for key, value in backends.items():
        with contextlib.suppress(ValidationError):
            found[key] = Runtime.model_validate(value)
    return found


def _write_entries(path: Path, entries: dict[str, Runtime]) -> None:
    body = {"backends": {k: v.model_dump(mode="json") for k, v in sorted(entries.items())}}
    write_atomically(path, json.dumps(body, indent=2))


def record(runtime: Runtime) -> None:
    """Put this backend in the state file (replacing its folder's entry; dead ones go)."""
    with _state_locked() as path:
        entries = {k: v for k, v in _entries(path).items() if alive(v.supervisor_pid)}
        entries[runtime.data_dir] = runtime
        _write_entries(path, entries)


def forget(data_dir: str, pid: int) -> None:
    """Take this folder's entry out of the state file, if the process `pid` wrote it."""
    with _state_locked() as path:
        entries = _entries(path)
        if data_dir in entries and entries[data_dir].supervisor_pid == pid:
            del entries[data_dir]
            _write_entries(path, entries)


def running() -> list[Runtime]:
    """The backends in the state file whose supervisor is alive, latest started first."""
    found = [r for r in _entries(state_file()).values() if alive(r.supervisor_pid)]
    return sorted(found, key=lambda r: r.started_at, reverse=True)
