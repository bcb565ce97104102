"""`portfolio up`: an embedded nats-server (unless one is configured) and one process per
service, each restarted if it dies, all stopped cleanly on Ctrl-C. It also chooses the
dashboard's port (reporting serves it), so the address it prints stays the same when
reporting restarts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import nats
from rich.console import Console
from rich.markup import escape

from contracts.subjects import SERVICES
from shared.embedded_nats import EmbeddedNats
from shared.eventlog import EventLog
from shared.httpauth import HttpAuth, UnsafeBinding
from shared.runtime import DataFolderInUse, DataFolderLock, Runtime, read_runtime, state_file
from shared.runtime import forget as forget_runtime
from shared.runtime import record as record_runtime
from shared.settings import RUNTIME_FILE, GatewaySettings, ReportingSettings, SupervisorSettings

#: `portfolio up` on a data folder another `portfolio up` holds (the CLI's usage code).
EXIT_IN_USE = 2

#: The HTTP gateway runs beside the services (`python -m services.gateway`).
GATEWAY = "gateway"


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
    return port


@dataclass
class Child:
    name: str
    log_path: Path
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    started: float = field(default=0.0)

    async def start(self, env: dict[str, str]) -> None:
        with self.log_path.open("ab") as log_file:
            # The gateway is no projection service: its own module (services/gateway).
            run = (
                ("services.gateway",)
                if self.name == GATEWAY
                else ("services.cli", "serve", self.name)
            )
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                *run,
                env=env,
                stdout=log_file,
                stderr=log_file,
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,
            )
        self.started = time.monotonic()

    async def stop(self, timeout: float = 10.0) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            process.kill()
            await process.wait()


class Supervisor:
    def __init__(self, settings: SupervisorSettings, console: Console) -> None:
        self.settings = settings
        self.console = console
        self.data_dir = settings.data_dir.resolve()
        self.embedded: EmbeddedNats | None = None
        self.children = {
            name: Child(name, self.data_dir / "logs" / f"{name}.log")
            for name in (*SERVICES, GATEWAY)
        }
        self.stopping = asyncio.Event()
        self.dashboard_url: str | None = None
        self.gateway_url: str | None = None
        self.started_at = datetime.now(UTC)
        self.state_warned = False

    async def run(self) -> int:
        lock = DataFolderLock(self.data_dir)
        try:
            lock.acquire()
        except DataFolderInUse as error:
            # Nothing of the running one is touched: not its store, not its runtime files.
            self.console.print(
                f"[red]{escape(str(error))}[/]: stop it first, or choose another PORTFOLIO_DATA_DIR"
            )
            return EXIT_IN_USE
        try:
            return await self._run()
        finally:
            lock.release()

    async def _run(self) -> int:
        (self.data_dir / "logs").mkdir(exist_ok=True)
        url = self._start_nats()
        try:
            await self._ensure_streams(url)
            env = dict(os.environ)
            env |= {"PORTFOLIO_NATS_URL": url, "PORTFOLIO_DATA_DIR": str(self.data_dir)}
            dashboard_port, self.dashboard_url = self._dashboard()
            env |= {"PORTFOLIO_DASHBOARD_PORT": str(dashboard_port)}
            gateway_port = self._gateway()
            if gateway_port is not None:
                env |= {"PORTFOLIO_GATEWAY_PORT": str(gateway_port)}
            for child in self.children.values():
                await child.start(env)
            self._write_runtime(url)
            self._banner(url)
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.stopping.set)
            await self._watch(env)
        finally:
            await self._shutdown()
        return 0

    def _start_nats(self) -> str:
        if self.settings.nats_url:
            return self.settings.nats_url
        port = self.settings.nats_port
        if port and not port_is_free(self.settings.nats_host, port):
            self.console.print(f"[yellow]port {port} is taken; NATS will use a free port[/]")
            port = 0
        self.embedded = EmbeddedNats(
            self.data_dir / "nats", port=port, host=self.settings.nats_host
        )
        return self.embedded.start()

    def _dashboard(self) -> tuple[int, str]:
        """The dashboard's port and address: the configured port if it is free, else any
        free one (0 also means any)."""
        reporting = ReportingSettings()
        host, port = reporting.dashboard_host, reporting.dashboard_port
        if port and not port_is_free(host, port):
            self.console.print(f"[yellow]port {port} is taken; the dashboard uses a free port[/]")
            port = 0
        port = port or free_port(host)
        shown = "127.0.0.1" if host in ("", "0.0.0.0") else host
        return port, f"http://{shown}:{port}/"

    def _gateway(self) -> int | None:
        """The HTTP gateway's port, chosen as the dashboard's is. A gateway configured to
        listen beyond loopback without logins is not started (it would refuse anyway)."""
        settings = GatewaySettings()
        host, port = settings.gateway_host, settings.gateway_port
        try:
            HttpAuth.from_settings(settings, host)
        except UnsafeBinding as error:
            self.console.print(f"[red]the HTTP gateway is not started[/]: {escape(str(error))}")
            del self.children[GATEWAY]
            return None
        if port and not port_is_free(host, port):
            self.console.print(f"[yellow]port {port} is taken; the gateway uses a free port[/]")
            port = 0
        port = port or free_port(host)
        shown = "127.0.0.1" if host in ("", "0.0.0.0") else host
        self.gateway_url = f"http://{shown}:{port}/v1/"
        return port

    async def _ensure_streams(self, url: str) -> None:
        nc = await nats.connect(
            [u.strip() for u in url.split(",")],
            connect_timeout=5,
            max_reconnect_attempts=3,
            **self.settings.nats_options(),
        )
        try:
            log = EventLog(
                nc.jetstream(),
                self.settings.subjects,
                self.settings.duplicate_window_seconds,
                self.settings.log_replicas,
            )
            await log.ensure_streams()
        finally:
            await nc.close()

    def _write_runtime(self, url: str) -> None:
        """`<data>/runtime.json` and this folder's entry in the per-user state file (the
        CLI finds the backend through either; shared/runtime.py)."""
        runtime = Runtime(
            nats_url=url,
            data_dir=str(self.data_dir),
            supervisor_pid=os.getpid(),
            started_at=self.started_at,
            dashboard_url=self.dashboard_url,
            services={
                name: child.process.pid if child.process else None
                for name, child in self.children.items()
            },
        )
        path = self.data_dir / RUNTIME_FILE
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(runtime.model_dump(mode="json"), indent=2))
        temporary.replace(path)
        try:
            record_runtime(runtime)
        except OSError as error:
            if not self.state_warned:
                self.console.print(
                    f"[yellow]cannot record the backend in {state_file()}[/] ({error}): the "
                    "CLI finds it only with --url or PORTFOLIO_NATS_URL, or from this folder"
                )
            self.state_warned = True

    def _banner(self, url: str) -> None:
        self.console.print(f"[bold green]portfolio is up[/]  NATS: [bold]{url}[/]")
        self.console.print(f"  dashboard: [bold]{self.dashboard_url}[/]")
        if self.gateway_url is not None:
            self.console.print(f"  HTTP API:  [bold]{self.gateway_url}[/]  (gateway)")
        self.console.print(f"  data:      {self.data_dir}")
        self.console.print(f"  logs:      {self.data_dir / 'logs'}")
        self.console.print(f"  services:  {', '.join(self.children)}")
        self.console.print("  try:       portfolio status   (in another terminal)")
        self.console.print("Press Ctrl-C to stop.")

    async def _watch(self, env: dict[str, str]) -> None:
        while not self.stopping.is_set():
            for child in self.children.values():
                process = child.process
                if process is None or process.returncode is None:
                    continue
                self.console.print(
                    f"[red]{child.name} exited with {process.returncode}; restarting[/]"
                )
                # Back off when a service keeps dying right after it starts.
                ran_for = time.monotonic() - child.started
                delay = self.settings.restart_backoff_seconds if ran_for > 10 else 3.0
                await asyncio.sleep(delay)
                child.restarts += 1
                await child.start(env)
                self._write_runtime(env["PORTFOLIO_NATS_URL"])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), 0.5)

    async def _shutdown(self) -> None:
        self.console.print("stopping services...")
        await asyncio.gather(*(child.stop() for child in self.children.values()))
        if self.embedded is not None:
            self.embedded.stop()
        mine = read_runtime(self.data_dir / RUNTIME_FILE)
        if mine is not None and mine.supervisor_pid == os.getpid():
            (self.data_dir / RUNTIME_FILE).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            forget_runtime(str(self.data_dir), os.getpid())
        self.console.print("[bold]stopped[/]; data kept in " + str(self.data_dir))
