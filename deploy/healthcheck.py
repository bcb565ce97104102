"""The container health check of a service (deploy/Dockerfile, docker-compose.yml).

Asks this container's service for its status over NATS (`<prefix>.query.<service>.status`)
and exits 0 when it answers with a projection that is starting, running or replaying, 1
when it is stalled or stopped, does not answer, or NATS cannot be reached. It connects
exactly as the service does, from the same `PORTFOLIO_*` settings: the servers of
PORTFOLIO_NATS_URL (comma-separated), PORTFOLIO_NATS_USER and PORTFOLIO_NATS_PASSWORD (or
a credentials file) and the TLS files. The service is PORTFOLIO_SERVICE, else the argument
after `serve` in PID 1's command line.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

import nats

from shared.settings import PortfolioSettings

HEALTHY = ("starting", "running", "replaying")


def service_name() -> str | None:
    if os.environ.get("PORTFOLIO_SERVICE"):
        return os.environ["PORTFOLIO_SERVICE"]
    try:
        with open("/proc/1/cmdline", "rb") as f:
            args = f.read().decode().split("\0")
    except OSError:
        return None
    if "serve" in args and args.index("serve") + 1 < len(args):
        return args[args.index("serve") + 1]
    return None


async def quiet(_: Exception) -> None:
    """The outcome is printed once below; no reconnect noise in `docker inspect`."""


async def check(service: str) -> int:
    settings = PortfolioSettings()
    nc = await nats.connect(
        settings.nats_servers(),
        name=f"portfolio-{service}-healthcheck",
        connect_timeout=2,
        # One try per listed server: a dead first node must not fail the check.
        max_reconnect_attempts=1,
        reconnect_time_wait=0.1,
        error_cb=quiet,
        **settings.nats_options(),
    )
    try:
        msg = await nc.request(settings.subjects.query(service, "status"), b"", timeout=3)
    finally:
        await nc.close()
    status = json.loads(msg.data)
    state = status.get("state")
    if state not in HEALTHY:
        print(f"{service}: {state}: {status.get('last_error')}")
        return 1
    print(f"{service}: {state} at position {status.get('position')}")
    return 0


def main() -> int:
    service = service_name()
    if not service:
        print("set PORTFOLIO_SERVICE or run `portfolio serve SERVICE`")
        return 1
    try:
        return asyncio.run(asyncio.wait_for(check(service), 8))
    except Exception as error:  # noqa: BLE001 - any failure is "unhealthy", with its reason
        print(f"{service}: no status: {type(error).__name__}: {error}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
