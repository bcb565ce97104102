"""`portfolio import`: many commands from a CSV or JSON Lines file, sent to intake.

Reading: a CSV file with a header row (a `command` column or one command for the whole
file; dotted columns such as `scoring.business_value` build nested objects; JSON in a cell
for nested fields; `a;b;c` for simple lists) or JSON Lines (`{"command": ..., "data":
{...}}` or a flat object with a `command` key).

Sending: every row without a `command_id` gets one derived from its content, so importing
the same file again appends nothing. Rows go out concurrently, but a row waits for every
earlier row that writes an aggregate it writes or reads (a proposal waits for the
objectives it serves and the projects it depends on), and a row that writes an aggregate
waits for the earlier rows that read it: the outcome is the one of sending the file in
order, one row at a time.

A row that cannot even be parsed is reported with its line number and still sent, raw, so
that intake keeps it in the rejections stream.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import heapq
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import TypeAdapter, ValidationError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from contracts.base import (
    AggregateKey,
    CommandAccepted,
    CommandRejected,
    CommandReply,
    ErrorCode,
    ErrorInfo,
    FieldError,
)
from contracts.registry import COMMAND_AGGREGATE, COMMANDS

Format = Literal["csv", "jsonl"]
EXTENSIONS: dict[str, Format] = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
#: Where a row goes when its command cannot be told (intake keeps it as a rejection).
FALLBACK_COMMAND = "ProposeProject"
#: How a row whose command cannot be told is shown.
UNKNOWN = "?"
#: Source recorded on imported commands that name none.
DEFAULT_SOURCE = "import"
#: Answers worth asking again, with the same command id (so never twice appended).
RETRIED = frozenset({ErrorCode.RATE_LIMITED, ErrorCode.UNAVAILABLE})
RETRY_ATTEMPTS = 8

_TOKEN = re.compile(r"^[A-Za-z0-9_\-]+$")
_LINES = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")
_REPLY = TypeAdapter[CommandAccepted | CommandRejected](CommandReply)

#: Sends one body to one command (by name) and returns intake's raw answer.
Send = Callable[[str, bytes], Awaitable[bytes]]


class ImportFileError(Exception):
    """The file as a whole cannot be imported: missing, unreadable, unknown format."""


@dataclass(frozen=True)
class Row:
    """One command read from the file, or the raw text of a row that could not be read."""

    line: int
    command: str
    data: dict[str, Any] | None
    raw: bytes
    problem: ErrorInfo | None = None

    @property
    def command_id(self) -> str | None:
        if self.data is None:
            return None
        given = self.data.get("command_id")
        return given if isinstance(given, str) else command_id_for(self.command, self.data)

    def body(self) -> bytes:
        """What goes on the wire: the data with its command id and source, or the raw row."""
        if self.data is None:
            return self.raw
        data = dict(self.data)
        data.setdefault("command_id", self.command_id)
        data.setdefault("source", DEFAULT_SOURCE)
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        try:
            return text.encode()
        except UnicodeEncodeError:  # a lone surrogate (`"\ud800"` in the file): sent escaped
            return json.dumps(data, separators=(",", ":")).encode()

    def subject_command(self) -> str:
        """The command subject the row is sent to (a token NATS routes to intake)."""
        if _TOKEN.match(self.command) and (self.data is not None or self.command in COMMANDS):
            return self.command
        return FALLBACK_COMMAND


def command_id_for(command: str, data: dict[str, Any]) -> str:
    """Deterministic: the same row imported twice is the same command (a duplicate)."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # surrogatepass: a lone surrogate read from the file still gives an id (intake refuses it)
    digest = hashlib.sha256(f"{command}\n{canonical}".encode("utf-8", "surrogatepass")).hexdigest()
    return f"import-{digest[:20]}"


@dataclass(frozen=True)
class Outcome:
    row: Row
    status: Literal["accepted", "duplicate", "rejected"]
    command_id: str | None
    error: ErrorInfo | None = None
    positions: tuple[int, ...] = ()

    def fields(self) -> list[str]:
        return [d.field for d in self.error.details] if self.error else []

    def message(self) -> str:
        if self.error is None:
            return ""
        if self.error.details:
            return "; ".join(f"{d.field}: {d.message}" for d in self.error.details)
        return self.error.message


@dataclass
class ImportFile:
    path: Path
    format: Format
    rows: list[Row]


@dataclass
class Summary:
    file: ImportFile
    outcomes: list[Outcome]
    seconds: float

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def rejected(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "rejected"]

    @property
    def rate(self) -> float:
        return len(self.outcomes) / self.seconds if self.seconds > 0 else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "file": str(self.file.path),
            "format": self.file.format,
            "rows": len(self.outcomes),
            "accepted": self.count("accepted"),
            "duplicates": self.count("duplicate"),
            "rejected": self.count("rejected"),
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(self.rate, 1),
            "rejections": [
                {
                    "line": o.row.line,
                    "command": o.row.command,
                    "command_id": o.command_id,
                    "code": o.error.code.value if o.error else None,
                    "fields": o.fields(),
                    "message": o.message(),
                    "error": o.error.model_dump(mode="json") if o.error else None,
                }
                for o in self.rejected
            ],
        }


# --- reading ----------------------------------------------------------------------------


def read_file(path: Path, command: str | None = None) -> ImportFile:
    """Every row of the file. `command` applies to rows that name none."""
    if command is not None and command not in COMMANDS:
        raise ImportFileError(f"unknown command {command!r}; known: {', '.join(sorted(COMMANDS))}")
    try:
        content = path.read_bytes()
    except OSError as error:
        raise ImportFileError(f"cannot read {path}: {error.strerror or error}") from error
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ImportFileError(f"{path} is not UTF-8 text: {error}") from error
    kind = detect_format(path, text)
    rows = read_jsonl(text, command) if kind == "jsonl" else read_csv(text, command)
    return ImportFile(path=path, format=kind, rows=rows)


def detect_format(path: Path, text: str) -> Format:
    by_extension = EXTENSIONS.get(path.suffix.lower())
    if by_extension is not None:
        return by_extension
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if first.startswith("{"):
        return "jsonl"
    if "," in first or first == "command":
        return "csv"
    raise ImportFileError(
        f"cannot tell the format of {path}: name it .csv, .jsonl or .ndjson, or give it a "
        "CSV header row or one JSON object per line"
    )


def _malformed(message: str, field: str | None = None, value: Any = None) -> ErrorInfo:
    """A row (or, with `field`, one of its cells) that is not even readable."""
    if field is None:
        return ErrorInfo(code=ErrorCode.MALFORMED, message=message)
    return ErrorInfo(
        code=ErrorCode.MALFORMED,
        message=f"{field}: {message}",
        details=(FieldError(field=field, message=message, input=value),),
    )


def _no_command(line: int, name: object) -> ErrorInfo:
    if isinstance(name, str) and name:
        problem = f"{name!r} is not a command name"
    else:
        problem = "missing: give a command (column or key) or --command"
    return ErrorInfo(
        code=ErrorCode.UNKNOWN_COMMAND,
        message=f"line {line}: command {problem}",
        details=(FieldError(field="command", message=problem, input=name),),
    )


def read_jsonl(text: str, command: str | None = None) -> list[Row]:
    rows = []
    # Only \n ends a line: JSON strings may hold U+2028 and friends that splitlines() splits on.
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        raw = line.encode()
        try:
            parsed = json.loads(line)
        except (ValueError, RecursionError) as error:
            rows.append(Row(number, command or UNKNOWN, None, raw, _malformed(_why(error))))
            continue
        if not isinstance(parsed, dict):
            problem = _malformed(f"a line must be a JSON object, got {type(parsed).__name__}")
            rows.append(Row(number, command or UNKNOWN, None, raw, problem))
            continue
        name = parsed.pop("command", None) or command
        if isinstance(parsed.get("data"), dict):
            nested = parsed.pop("data")
            data = {**parsed, **nested}
        else:
            data = parsed
        if not isinstance(name, str) or not _TOKEN.match(name):
            shown = name if isinstance(name, str) and name else UNKNOWN
            rows.append(Row(number, shown, None, raw, _no_command(number, name)))
            continue
        rows.append(Row(number, name, data, raw))
    return rows


def _why(error: Exception) -> str:
    if isinstance(error, json.JSONDecodeError):
        return f"not JSON: {error.msg} at column {error.colno}"
    return "not JSON: nested too deeply"


def read_csv(text: str, command: str | None = None) -> list[Row]:
    physical = _LINES.findall(text)
    reader = csv.reader(iter(physical))
    try:
        header = next(reader, None)
    except csv.Error as error:
        raise ImportFileError(f"the CSV header cannot be read: {error}") from error
    if header is None:
        return []
    columns = [name.strip() for name in header]
    duplicated = sorted({c for c in columns if c and columns.count(c) > 1})
    if duplicated:
        raise ImportFileError(f"the CSV header repeats {', '.join(duplicated)}")
    if "command" not in columns and command is None:
        raise ImportFileError(
            "the CSV file has no `command` column: add one, or give --command for every row"
        )
    rows = []
    start = reader.line_num
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            raise ImportFileError(f"line {reader.line_num}: {error}") from error
        first, start = start + 1, reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        raw = "".join(physical[first - 1 : start]).rstrip("\r\n").encode()
        rows.append(_csv_row(first, columns, cells, raw, command))
    return rows


def _csv_row(
    line: int, columns: list[str], cells: list[str], raw: bytes, default: str | None
) -> Row:
    named = dict(zip(columns, cells, strict=False))
    name = named.pop("command", "").strip() or default
    if name is None or not _TOKEN.match(name):
        return Row(line, name or UNKNOWN, None, raw, _no_command(line, name))
    if len(cells) > len(columns):
        problem = _malformed(f"the row has {len(cells)} cells, the header {len(columns)}")
        return Row(line, name, None, raw, problem)
    data: dict[str, Any] = {}
    for column, cell in named.items():
        if not column or not cell.strip():
            continue
        path = column.split(".")
        try:
            value = _cell_value(name, path, cell.strip())
            _set_path(data, path, value)
        except ValueError as error:
            return Row(line, name, None, raw, _malformed(str(error), column, cell[:200]))
    return Row(line, name, data, raw)


def _set_path(data: dict[str, Any], path: list[str], value: Any) -> None:
    target = data
    for part in path[:-1]:
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            raise ValueError(f"conflicts with the column {part}")
    if isinstance(target.get(path[-1]), dict) and isinstance(value, dict):
        target[path[-1]] = {**value, **target[path[-1]]}
    elif path[-1] in target:
        raise ValueError("given twice (another column sets it too)")
    else:
        target[path[-1]] = value


def _cell_value(command: str, path: list[str], cell: str) -> Any:
    """A cell as the command's schema expects it: numbers and booleans typed, lists from
    JSON or `a;b;c`, objects from JSON; anything unexpected stays a string for intake to
    refuse with a field-level reason."""
    kinds = _kinds_at(command, tuple(path))
    if "array" in kinds or "object" in kinds or (not kinds and cell[:1] in "[{"):
        if cell[:1] in "[{":
            try:
                return json.loads(cell)
            except (ValueError, RecursionError) as error:
                raise ValueError(f"cell is {_why(error)}") from error
        if "array" in kinds:
            items = [item.strip() for item in cell.split(";") if item.strip()]
            item_kinds = _kinds_at(command, (*path, "[]"))
            return [_scalar(item, item_kinds) for item in items]
        return cell
    return _scalar(cell, kinds)


def _scalar(cell: str, kinds: frozenset[str]) -> Any:
    if kinds == {"integer"}:
        try:
            return int(cell)
        except ValueError:
            return cell
    if kinds == {"boolean"}:
        lowered = cell.lower()
        if lowered in ("true", "yes", "y", "1"):
            return True
        if lowered in ("false", "no", "n", "0"):
            return False
    return cell


@cache
def _schema(command: str) -> dict[str, Any] | None:
    model = COMMANDS.get(command)
    return None if model is None else model.model_json_schema()


@lru_cache(maxsize=4096)
def _kinds_at(command: str, path: tuple[str, ...]) -> frozenset[str]:
    """The JSON types the command's schema allows at a dotted path (`[]`: list items)."""
    root = _schema(command)
    if root is None:
        return frozenset()
    defs = root.get("$defs", {})
    nodes = [root]
    for part in path:
        found = []
        for node in _options(nodes, defs):
            child = node.get("items") if part == "[]" else node.get("properties", {}).get(part)
            if child is not None:
                found.append(child)
        if not found:
            return frozenset()
        nodes = found
    return frozenset(
        node["type"] for node in _options(nodes, defs) if node.get("type") not in (None, "null")
    )


def _options(nodes: list[dict[str, Any]], defs: dict[str, Any]) -> list[dict[str, Any]]:
    """The nodes with `$ref` resolved and `anyOf` spread out."""
    resolved: list[dict[str, Any]] = []
    for node in nodes:
        if "$ref" in node:
            node = defs.get(node["$ref"].rsplit("/", 1)[-1], {})
        if "anyOf" in node:
            resolved.extend(_options(node["anyOf"], defs))
        else:
            resolved.append(node)
    return resolved


# --- ordering ---------------------------------------------------------------------------


def _touches(row: Row) -> tuple[AggregateKey | None, tuple[AggregateKey, ...]]:
    """The aggregate a row writes and those its decision reads."""
    if row.data is None or row.command not in COMMANDS:
        return None, ()
    model = COMMANDS[row.command]
    try:
        command = model.model_validate(row.data)
    except ValidationError:
        aggregate_type, id_field = COMMAND_AGGREGATE[row.command]
        value = row.data.get(id_field)
        return ((aggregate_type, value) if isinstance(value, str) else None), ()
    return command.aggregate_key(), command.references()


def plan(rows: list[Row]) -> list[set[int]]:
    """For each row, the earlier rows it must wait for (readers/writer per aggregate)."""
    last_writer: dict[AggregateKey, int] = {}
    readers: dict[AggregateKey, list[int]] = {}
    waits: list[set[int]] = []
    for index, row in enumerate(rows):
        written, read = _touches(row)
        before: set[int] = set()
        for key in (*read, *((written,) if written else ())):
            if key in last_writer:
                before.add(last_writer[key])
        if written is not None:
            before.update(readers.pop(written, ()))
            last_writer[written] = index
        for key in read:
            if key != written:
                readers.setdefault(key, []).append(index)
        waits.append(before)
    return waits


class _Scheduler:
    """Hands out rows whose predecessors are done, lowest line first."""

    def __init__(self, waits: list[set[int]]) -> None:
        self.pending = [len(w) for w in waits]
        self.followers: list[list[int]] = [[] for _ in waits]
        for index, before in enumerate(waits):
            for earlier in before:
                self.followers[earlier].append(index)
        self.ready = [i for i, n in enumerate(self.pending) if n == 0]
        heapq.heapify(self.ready)
        self.unfinished = len(waits)
        self.changed = asyncio.Event()

    async def next(self) -> int | None:
        while not self.ready:
            if self.unfinished == 0:
                return None
            self.changed.clear()
            await self.changed.wait()
        return heapq.heappop(self.ready)

    def finished(self, index: int) -> None:
        self.unfinished -= 1
        for follower in self.followers[index]:
            self.pending[follower] -= 1
            if self.pending[follower] == 0:
                heapq.heappush(self.ready, follower)
        self.changed.set()


# --- sending ----------------------------------------------------------------------------


async def submit(
    rows: list[Row],
    send: Send,
    concurrency: int = 64,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> tuple[list[Outcome], float]:
    """Send every row; returns the outcomes in file order and the seconds it took."""
    scheduler = _Scheduler(plan(rows))
    outcomes: list[Outcome | None] = [None] * len(rows)
    started = time.monotonic()

    # One row goes first: an unreachable intake then fails once, not once per worker.
    first_answer = asyncio.Event()

    async def worker(first: bool) -> None:
        if not first:
            await first_answer.wait()
        while (index := await scheduler.next()) is not None:
            outcome = await send_row(rows[index], send)
            first_answer.set()
            outcomes[index] = outcome
            scheduler.finished(index)
            if on_outcome is not None:
                on_outcome(outcome)
        first_answer.set()

    count = max(1, min(concurrency, len(rows)))
    workers = [asyncio.create_task(worker(n == 0)) for n in range(count)]
    try:
        await asyncio.gather(*workers)
    except BaseException:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        raise
    return [o for o in outcomes if o is not None], time.monotonic() - started


async def send_row(row: Row, send: Send) -> Outcome:
    reply = await _ask(row.subject_command(), row.body(), send)
    if isinstance(reply, CommandAccepted):
        status: Literal["accepted", "duplicate"] = "duplicate" if reply.duplicate else "accepted"
        positions = tuple(e.position for e in reply.events)
        return Outcome(row, status, reply.command_id, positions=positions)
    # A row that could not be read is reported for what was wrong with it locally.
    command_id = reply.command_id or row.command_id
    return Outcome(row, "rejected", command_id, row.problem or reply.error)


async def _ask(command: str, body: bytes, send: Send) -> CommandAccepted | CommandRejected:
    """Intake's answer; asked again (same command id) while it says to come back later."""
    attempt = 0
    while True:
        raw = await send(command, body)
        try:
            reply = _REPLY.validate_json(raw)
        except ValidationError:
            error = ErrorInfo(code=ErrorCode.INTERNAL, message=f"unreadable answer: {raw[:200]!r}")
            return CommandRejected(command_id=None, error=error)
        attempt += 1
        if isinstance(reply, CommandAccepted) or reply.error.code not in RETRIED:
            return reply
        if attempt == RETRY_ATTEMPTS:
            return reply
        await asyncio.sleep(min(5.0, 0.1 * 2**attempt))


# --- showing ----------------------------------------------------------------------------


class RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f} rows/s", style="progress.data.speed")


@contextmanager
def progress(console: Console, file: ImportFile) -> Iterator[Callable[[Outcome], None]]:
    """A progress bar (rows done / total, rate); yields the callback for each outcome."""
    with Progress(
        TextColumn(f"importing {file.path.name}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("import", total=len(file.rows))
        yield lambda _: bar.advance(task)


def print_summary(console: Console, summary: Summary) -> None:
    table = Table("rows", "accepted", "duplicates", "rejected", "seconds", "rows/s")
    table.add_row(
        str(len(summary.outcomes)),
        f"[green]{summary.count('accepted')}[/]",
        f"[yellow]{summary.count('duplicate')}[/]",
        f"[red]{summary.count('rejected')}[/]" if summary.rejected else "0",
        f"{summary.seconds:.2f}",
        f"{summary.rate:,.0f}",
    )
    console.print(table)
    for o in summary.rejected:
        code = o.error.code.value if o.error else "?"
        fields = ",".join(o.fields()) or "-"
        console.print(
            f"line {o.row.line}: {o.row.command} {code} [{fields}] {o.message()}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    console.print(
        f"{summary.file.path}: {len(summary.outcomes)} rows in {summary.seconds:.2f}s "
        f"({summary.rate:,.0f} rows/s)",
        highlight=False,
        soft_wrap=True,
    )
