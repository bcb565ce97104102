"""The container deployment (docker-compose.yml, deploy/) checked without a container engine.

Compose is read with PyYAML; the NATS configs are parsed here and by the real nats-server
(`-t`); the Dockerfile's health check script is written out exactly as the image build
writes it and run against a real nats-server.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

import nats
import pytest
from sqlalchemy.engine import make_url

from contracts.queries import ServiceStatus
from contracts.subjects import SERVICES
from services.gateway import webhooks
from shared.embedded_nats import EmbeddedNats, nats_server_binary
from shared.projection import RunnerState
from shared.settings import (
    GatewaySettings,
    IntakeSettings,
    LedgerSettings,
    NotifySettings,
    PortfolioSettings,
    PrioritizationSettings,
    ReportingSettings,
    RiskSettings,
)

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
NATS_DIR = ROOT / "deploy" / "nats"
AUTH_CONF = NATS_DIR / "auth.conf"
ENV_EXAMPLE = ROOT / "deploy" / "env.example"
NATS_NODES = ("nats-1", "nats-2", "nats-3")
INFRASTRUCTURE = (*NATS_NODES, "postgres")
CLIENT_PORT, ROUTE_PORT, MONITOR_PORT = 4222, 6222, 8222

SETTINGS_CLASS: dict[str, type[PortfolioSettings]] = {
    "intake": IntakeSettings,
    "prioritization": PrioritizationSettings,
    "ledger": LedgerSettings,
    "risk": RiskSettings,
    "reporting": ReportingSettings,
    "notify": NotifySettings,
    "gateway": GatewaySettings,
}
#: Read by the image's health check script, not by the settings classes; and the webhook
#: secrets, named by the shipped mapping files (deploy/webhooks), read by the gateway.
IMAGE_ONLY_VARIABLES = {"PORTFOLIO_SERVICE"} | {
    source.secret_env for source in webhooks.load_sources(webhooks.SHIPPED, {}).values()
}
#: Projection states in which the health check reports the container healthy.
HEALTHY_STATES = {"starting", "running", "replaying"}


def env_name(settings_class: type[PortfolioSettings], field: str) -> str:
    return f"{settings_class.model_config.get('env_prefix', '')}{field}".upper()


def settings_variables(settings_class: type[PortfolioSettings]) -> set[str]:
    return {env_name(settings_class, field) for field in settings_class.model_fields}


def example_env() -> dict[str, str]:
    """deploy/env.example: the variables Compose interpolates (copied to .env by operators)."""
    found = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            found[name.strip()] = value.strip()
    return found


def auth_password_variables() -> set[str]:
    """The environment variables auth.conf reads the users' passwords from."""
    return set(re.findall(r"password:\s*\$(\w+)", AUTH_CONF.read_text()))


# --- Dockerfile ---------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, continuation lines joined the way Docker joins
    them (backslash-newline removed, comment lines inside an instruction dropped)."""
    instructions: list[tuple[str, str]] = []
    current = ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") or (not current and not line.strip()):
            continue
        if line.endswith("\\"):
            current += line[:-1]
            continue
        current += line
        keyword, _, rest = current.strip().partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        current = ""
    assert not current, "the Dockerfile ends inside a continued instruction"
    return instructions


def instruction_args(keyword: str) -> list[str]:
    return [rest for kw, rest in dockerfile_instructions() if kw == keyword]


def exec_form(rest: str) -> list[str]:
    value = json.loads(rest)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), rest
    return value


def healthcheck_command() -> list[str]:
    (rest,) = instruction_args("HEALTHCHECK")
    options, cmd, command = rest.partition("CMD ")
    assert cmd, f"HEALTHCHECK has no CMD: {rest}"
    assert "--timeout=" in options and "--interval=" in options
    return exec_form(command)


def healthcheck_script_path() -> str:
    command = healthcheck_command()
    assert command[0] == "python" and len(command) == 2, command
    return command[1]


HEALTHCHECK_SOURCE = ROOT / "deploy" / "healthcheck.py"


@pytest.fixture(scope="module")
def healthcheck_script() -> Path:
    """The script the image runs: deploy/healthcheck.py, copied to the HEALTHCHECK's path."""
    target = healthcheck_script_path()
    copies = [rest.split() for rest in instruction_args("COPY")]
    assert ["deploy/healthcheck.py", target] in copies, f"no COPY of the health check to {target}"
    return HEALTHCHECK_SOURCE


def test_dockerfile_builds_the_project_on_python_311_slim() -> None:
    assert instruction_args("FROM") == ["python:3.11-slim"]
    assert any(re.search(r"\bpip install \.(\s|$)", rest) for rest in instruction_args("RUN"))
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["requires-python"] == ">=3.11"
    copied = {
        source
        for rest in instruction_args("COPY")
        if "--from" not in rest
        for source in [t for t in rest.split() if not t.startswith("--")][:-1]
    }
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: no such file in the build context"
    packages = {
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    assert packages | {"pyproject.toml"} <= copied


def test_dockerfile_runs_portfolio_serve() -> None:
    (entrypoint,) = instruction_args("ENTRYPOINT")
    (cmd,) = instruction_args("CMD")
    assert exec_form(entrypoint) == ["portfolio"]
    command = exec_form(cmd)
    assert command[0] == "serve" and len(command) == 2 and command[1] in SERVICES
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["portfolio"] == "services.cli:main"


def test_dockerfile_runs_as_a_non_root_user() -> None:
    users = instruction_args("USER")
    assert users, "no USER instruction: the services would run as root"
    assert users[-1].split(":")[0] not in ("root", "0")


def test_dockerfile_health_check_connects_as_the_service_does(healthcheck_script: Path) -> None:
    """The same settings as the service: servers, credentials and TLS from PORTFOLIO_*."""
    text = healthcheck_script.read_text()
    assert "PortfolioSettings()" in text and "settings.nats_options()" in text
    assert "settings.nats_servers()" in text and "PORTFOLIO_SERVICE" in text


async def run_healthcheck(script: Path, env: dict[str, str]) -> tuple[int, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PORTFOLIO_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        # In the image the project is installed; here it is importable from the root.
        cwd=ROOT,
        env=clean | env | {"PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode is not None
    return process.returncode, out.decode()


def status_answer(service: str, state: str) -> bytes:
    status = ServiceStatus(
        service=service,
        state=state,
        position=7,
        log_position=9,
        lag=2,
        applied_since_start=7,
        rebuilds_since_start=0,
        skipped_events=0,
        last_error="OperationalError: database is locked" if state == "stalled" else None,
        started_at=datetime.now(UTC),
        pid=1,
    )
    return status.model_dump_json().encode()


@pytest.mark.parametrize("state", get_args(RunnerState))
async def test_health_check_follows_the_service_status(
    healthcheck_script: Path, nats_url: str, state: str
) -> None:
    nc = await nats.connect(nats_url)
    try:

        async def answer(msg: Any) -> None:
            await msg.respond(status_answer("ledger", state))

        await nc.subscribe(PortfolioSettings().subjects.query("ledger", "status"), cb=answer)
        await nc.flush()
        # A dead first server in the list: the check must try the others.
        code, out = await run_healthcheck(
            healthcheck_script,
            {"PORTFOLIO_SERVICE": "ledger", "PORTFOLIO_NATS_URL": f"nats://127.0.0.1:1,{nats_url}"},
        )
    finally:
        await nc.close()
    assert code == (0 if state in HEALTHY_STATES else 1), out
    assert state in out


async def test_health_check_fails_when_the_service_does_not_answer(
    healthcheck_script: Path, nats_url: str
) -> None:
    code, out = await run_healthcheck(
        healthcheck_script, {"PORTFOLIO_SERVICE": "risk", "PORTFOLIO_NATS_URL": nats_url}
    )
    assert code == 1
    assert "risk" in out


async def test_health_check_fails_when_nats_is_unreachable(healthcheck_script: Path) -> None:
    code, out = await run_healthcheck(
        healthcheck_script,
        {"PORTFOLIO_SERVICE": "intake", "PORTFOLIO_NATS_URL": "nats://127.0.0.1:1"},
    )
    assert code == 1
    assert "no status" in out


def credentials(user: str, passwords: dict[str, str]) -> dict[str, str]:
    password = passwords[f"NATS_PASSWORD_{user.upper()}"]
    return {"PORTFOLIO_NATS_USER": user, "PORTFOLIO_NATS_PASSWORD": password}


async def test_health_check_authenticates_as_the_service(
    healthcheck_script: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With auth.conf on, as in compose: the check connects with the container's own user
    and password and may ask its own service's status, and only that."""
    passwords = {k: v for k, v in example_env().items() if k.startswith("NATS_PASSWORD_")}
    for variable, password in passwords.items():
        monkeypatch.setenv(variable, password)  # the server's environment
    conf = tmp_path / "conf"
    conf.mkdir()
    shutil.copy(AUTH_CONF, conf / "auth.conf")
    (conf / "server.conf").write_text("include auth.conf\n")
    server = EmbeddedNats(tmp_path / "nats", extra_args=("-c", str(conf / "server.conf")))
    url = server.start()
    ledger = {
        "PORTFOLIO_NATS_USER": "ledger",
        "PORTFOLIO_NATS_PASSWORD": passwords["NATS_PASSWORD_LEDGER"],
    }
    try:
        nc = await nats.connect(url, user="ledger", password=ledger["PORTFOLIO_NATS_PASSWORD"])
        try:

            async def answer(msg: Any) -> None:
                await msg.respond(status_answer("ledger", "running"))

            await nc.subscribe(PortfolioSettings().subjects.query("ledger", "status"), cb=answer)
            await nc.flush()
            env = {"PORTFOLIO_SERVICE": "ledger", "PORTFOLIO_NATS_URL": url}
            code, out = await run_healthcheck(healthcheck_script, env | ledger)
            assert code == 0 and "running" in out, out
            # Without credentials, or with a wrong password: no connection, unhealthy.
            code, out = await run_healthcheck(healthcheck_script, env)
            assert code == 1 and "no status" in out, out
            wrong = ledger | {"PORTFOLIO_NATS_PASSWORD": "wrong"}
            code, out = await run_healthcheck(healthcheck_script, env | wrong)
            assert code == 1 and "no status" in out, out
            # Another service's user may not ask ledger's status (its request is refused).
            risk = {
                "PORTFOLIO_NATS_USER": "risk",
                "PORTFOLIO_NATS_PASSWORD": passwords["NATS_PASSWORD_RISK"],
            }
            code, out = await run_healthcheck(healthcheck_script, env | risk)
            assert code == 1 and "no status" in out, out
        finally:
            await nc.close()
    finally:
        server.stop()


# --- NATS cluster configuration -----------------------------------------------------------


def nats_config(node: str) -> str:
    """The node's config with comments removed."""
    text = (NATS_DIR / f"{node}.conf").read_text()
    return "\n".join(re.sub(r"(^|\s)(#|//).*$", "", line) for line in text.splitlines())


def block(config: str, name: str) -> str:
    found = re.search(rf"^{name}\s*:?\s*\{{(.*?)^\}}", config, re.MULTILINE | re.DOTALL)
    assert found, f"no {name} block"
    return found.group(1)


def setting(text: str, name: str) -> str:
    found = re.search(rf"^\s*{name}\s*[:=]\s*\"?([^\s\"]+)\"?\s*$", text, re.MULTILINE)
    assert found, f"{name} not set"
    return found.group(1)


def top_level(config: str, name: str) -> str:
    found = re.search(rf"^{name}\s*[:=]\s*\"?([^\s\"]+)\"?\s*$", config, re.MULTILINE)
    assert found, f"{name} not set at the top level"
    return found.group(1)


def routes(config: str, env: dict[str, str]) -> set[tuple[str, int, str, str]]:
    """(host, port, user, password) of each route: each is a `$VARIABLE` holding the whole
    URL (the server expands no variable inside a string), resolved from `env`."""
    listed = re.search(r"routes\s*[:=]?\s*\[(.*?)\]", block(config, "cluster"), re.DOTALL)
    assert listed, "the cluster lists no routes"
    names = re.findall(r"\$(\w+)", listed.group(1))
    assert names and not re.findall(r"nats(?:-route)?://", listed.group(1))
    found = set()
    for name in names:
        url = re.fullmatch(r"nats-route://(\w+):(\w+)@([\w.-]+):(\d+)", env[name])
        assert url, f"{name}={env[name]} is not a route URL with credentials"
        found.add((url[3], int(url[4]), url[1], url[2]))
    return found


def node_environment(node: str) -> dict[str, str]:
    """The node's environment as docker-compose.yml gives it (deploy/env.example's values)."""
    return compose_service_environment(node)


@pytest.mark.parametrize("node", NATS_NODES)
def test_nats_node_config(node: str) -> None:
    config = nats_config(node)
    assert top_level(config, "server_name") == node
    assert top_level(config, "listen").endswith(f":{CLIENT_PORT}")
    assert top_level(config, "http").endswith(f":{MONITOR_PORT}")
    jetstream = block(config, "jetstream")
    assert setting(jetstream, "sync_interval") == "always"
    assert setting(jetstream, "store_dir") == "/data"
    cluster = block(config, "cluster")
    assert setting(cluster, "listen").endswith(f":{ROUTE_PORT}")
    assert setting(cluster, "name") == "portfolio"
    env = node_environment(node)
    # Routes authenticate, with the route user and password in both directions.
    authorization = re.search(r"authorization\s*\{(.*?)\}", cluster, re.DOTALL)
    assert authorization, "cluster routes are not authenticated"
    assert setting(authorization.group(1), "user") == "route"
    assert setting(authorization.group(1), "password") == "$NATS_ROUTE_PASSWORD"
    password = env["NATS_ROUTE_PASSWORD"]
    assert routes(config, env) == {
        (peer, ROUTE_PORT, "route", password) for peer in NATS_NODES if peer != node
    }
    assert re.search(r"^include\s+\"?auth\.conf\"?\s*$", config, re.MULTILINE), "no auth.conf"


@pytest.mark.parametrize("node", NATS_NODES)
def test_nats_server_accepts_the_config(node: str) -> None:
    """With the node's environment exactly as Compose gives it (deploy/env.example's values)."""
    bare = {k: v for k, v in os.environ.items() if not k.startswith("NATS_")}
    env = node_environment(node)
    assert auth_password_variables() <= set(env)
    result = subprocess.run(
        [nats_server_binary(), "-t", "-c", str(NATS_DIR / f"{node}.conf")],
        capture_output=True,
        text=True,
        timeout=30,
        env=bare | env,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- docker-compose.yml -------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    yaml = pytest.importorskip(
        "yaml", reason="PyYAML is not installed, so docker-compose.yml cannot be parsed"
    )
    loaded = yaml.safe_load(interpolate(COMPOSE_FILE.read_text(), example_env()))
    assert isinstance(loaded, dict)
    return loaded


REFERENCE = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}` and `${VAR:?error}`, from `env` (.env)."""

    def value(found: re.Match[str]) -> str:
        name, operator, argument = found.groups()
        if env.get(name):
            return env[name]
        assert operator is not None and "-" in operator, f"${{{name}}} is not set: {argument}"
        return str(argument)

    return REFERENCE.sub(value, text)


def compose_service_environment(name: str) -> dict[str, str]:
    """A container's environment as docker-compose.yml gives it (with deploy/env.example's
    values): what other tests run a service with, rather than their own copy."""
    import yaml

    loaded = yaml.safe_load(interpolate(COMPOSE_FILE.read_text(), example_env()))
    return environment(loaded["services"][name])


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def healthcheck_text(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else str(test)


def test_compose_has_the_cluster_the_database_and_every_service(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {*INFRASTRUCTURE, *SERVICES, "gateway"}


def test_compose_gateway(compose: dict[str, Any]) -> None:
    """The gateway runs from the image as its own NATS user, beyond loopback with tokens
    (it refuses to start otherwise), with the shipped webhook mappings and their secrets."""
    service = compose["services"]["gateway"]
    assert service["build"] == {"context": ".", "dockerfile": "deploy/Dockerfile"}
    assert service["command"] == ["serve", "gateway"]
    env = environment(service)
    assert env["PORTFOLIO_NATS_USER"] == "gateway"
    node = environment(compose["services"]["nats-1"])
    assert env["PORTFOLIO_NATS_PASSWORD"] == node["NATS_PASSWORD_GATEWAY"]
    assert env["PORTFOLIO_GATEWAY_HOST"] == "0.0.0.0" and env["PORTFOLIO_HTTP_TOKENS"]
    assert f"{env['PORTFOLIO_GATEWAY_PORT']}:{env['PORTFOLIO_GATEWAY_PORT']}" in service["ports"]
    assert f":{env['PORTFOLIO_GATEWAY_PORT']}/v1/health" in healthcheck_text(service)
    copies = [rest.split() for rest in instruction_args("COPY")]
    assert ["deploy/webhooks", env["PORTFOLIO_WEBHOOKS_DIR"]] in copies
    shipped = webhooks.load_sources(webhooks.SHIPPED, {}).values()
    assert {s.secret_env for s in shipped} <= set(env)


def test_compose_every_container_has_a_health_check_and_restarts(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        assert service.get("restart") == "unless-stopped", name
        test = service.get("healthcheck", {}).get("test")
        assert test and test != ["NONE"], f"{name} has no health check"
        assert not service["healthcheck"].get("disable"), name


def test_compose_references_only_files_that_exist(compose: dict[str, Any]) -> None:
    declared_volumes = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        build = service.get("build")
        if build is not None:
            context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
            assert context.is_dir(), f"{name}: build context {context} missing"
            dockerfile = context / (
                build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile"
            )
            assert dockerfile.is_file(), f"{name}: {dockerfile} missing"
        for volume in service.get("volumes", []):
            if isinstance(volume, dict):
                kind, source = volume.get("type"), str(volume.get("source", ""))
            else:
                source = volume.split(":", 1)[0]
                kind = "bind" if source.startswith((".", "/", "~")) else "volume"
            if kind == "bind":
                assert (ROOT / source).exists(), f"{name}: mounts {source}, which does not exist"
            else:
                assert source in declared_volumes, f"{name}: volume {source} is not declared"


def test_compose_nats_nodes(compose: dict[str, Any]) -> None:
    for node in NATS_NODES:
        service = compose["services"][node]
        version = re.fullmatch(r"nats:(\d+)\.(\d+)[\w.-]*", service["image"])
        assert version and (int(version[1]), int(version[2])) >= (2, 11), service["image"]
        command = service["command"]
        config_path = command[command.index("--config") + 1]
        mounts = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
        assert Path(mounts[config_path]) == Path(f"./deploy/nats/{node}.conf")
        # `include auth.conf` is relative to the including file.
        auth_path = str(Path(config_path).parent / "auth.conf")
        assert Path(mounts[auth_path]) == Path("./deploy/nats/auth.conf")
        assert auth_password_variables() <= set(environment(service)), f"{node}: passwords"
        data_volume = mounts["/data"]
        assert data_volume in compose["volumes"], f"{node}: /data is not a named volume"
        check = healthcheck_text(service)
        assert f":{MONITOR_PORT}/healthz?js-enabled-only=true" in check
    data_volumes = {
        v.split(":")[0]
        for n in NATS_NODES
        for v in compose["services"][n]["volumes"]
        if v.split(":")[1] == "/data"
    }
    assert len(data_volumes) == len(NATS_NODES), "two nodes share a data volume"


def test_compose_postgres(compose: dict[str, Any]) -> None:
    postgres = compose["services"]["postgres"]
    assert postgres["image"].startswith("postgres:16")
    assert "pg_isready" in healthcheck_text(postgres)
    mounts = {v.split(":")[1]: v.split(":")[0] for v in postgres["volumes"]}
    assert mounts["/var/lib/postgresql/data"] in compose["volumes"]


@pytest.mark.parametrize("name", SERVICES)
def test_compose_service(compose: dict[str, Any], name: str) -> None:
    service = compose["services"][name]
    assert service["build"] == {"context": ".", "dockerfile": "deploy/Dockerfile"}
    assert service["command"] == ["serve", name]
    assert healthcheck_script_path() in healthcheck_text(service)
    assert service["depends_on"] == {
        dependency: {"condition": "service_healthy"} for dependency in INFRASTRUCTURE
    }
    env = environment(service)
    assert env["PORTFOLIO_SERVICE"] == name
    urls = env["PORTFOLIO_NATS_URL"].split(",")
    assert sorted(urls) == [f"nats://{node}:{CLIENT_PORT}" for node in NATS_NODES]
    database = make_url(env["PORTFOLIO_DATABASE_URL"])
    assert database.drivername == "postgresql+psycopg"
    postgres = environment(compose["services"]["postgres"])
    assert (database.host, database.port) == ("postgres", 5432)
    assert database.username == postgres["POSTGRES_USER"]
    assert database.password == postgres["POSTGRES_PASSWORD"]
    assert database.database == postgres["POSTGRES_DB"]
    # Its own NATS user, with the password the NATS nodes give that user.
    assert env["PORTFOLIO_NATS_USER"] == name
    node = environment(compose["services"]["nats-1"])
    assert env["PORTFOLIO_NATS_PASSWORD"] == node[f"NATS_PASSWORD_{name.upper()}"]


def test_compose_secrets_come_from_the_environment() -> None:
    """Every password is a required `${VAR:?...}` (no default, Compose refuses to start
    without it), and deploy/env.example lists exactly those variables."""
    text = COMPOSE_FILE.read_text()
    references = REFERENCE.findall(text)
    assert references
    assert {operator for _, operator, _ in references} == {":?"}
    assert {name for name, _, _ in references} == set(example_env())
    assert "POSTGRES_PASSWORD: portfolio" not in text
    with pytest.raises(AssertionError, match="NATS_PASSWORD_RISK"):
        interpolate(text, example_env() | {"NATS_PASSWORD_RISK": ""})


@pytest.mark.parametrize("name", [*SERVICES, "gateway"])
def test_compose_variables_are_settings_of_the_service(
    compose: dict[str, Any], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings_class = SETTINGS_CLASS[name]
    env = environment(compose["services"][name])
    ours = {k: v for k, v in env.items() if k.startswith("PORTFOLIO_")}
    unknown = set(ours) - settings_variables(settings_class) - IMAGE_ONLY_VARIABLES
    assert not unknown, f"{name}: {settings_class.__name__} has no field for {sorted(unknown)}"
    for key in os.environ:
        if key.startswith("PORTFOLIO_"):
            monkeypatch.delenv(key)
    for key, value in ours.items():
        monkeypatch.setenv(key, value)
    settings = settings_class()
    for field in settings_class.model_fields:
        if env_name(settings_class, field) in ours:
            value, given = getattr(settings, field), ours[env_name(settings_class, field)]
            # A dict or list setting is JSON in the environment.
            assert (
                value == json.loads(given)
                if isinstance(value, dict | list)
                else value == (given.lower() in ("1", "true", "yes", "on"))
                if isinstance(value, bool)
                else (str(value) == given)
            ), field


def test_compose_mentions_no_unknown_portfolio_variable(compose: dict[str, Any]) -> None:
    """Also catches a misspelt variable in an anchor or an `x-` block."""
    known = set().union(*(settings_variables(c) for c in SETTINGS_CLASS.values()))
    mentioned = set(re.findall(r"\bPORTFOLIO_[A-Z0-9_]+", COMPOSE_FILE.read_text()))
    assert mentioned - known - IMAGE_ONLY_VARIABLES == set()


def test_compose_database_driver_is_a_project_dependency(compose: dict[str, Any]) -> None:
    url = environment(compose["services"]["intake"])["PORTFOLIO_DATABASE_URL"]
    driver = make_url(url).get_driver_name()
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[\s\[<>=!~;]", d, maxsplit=1)[0].lower() for d in dependencies}
    assert driver in names


# --- deploy/OPERATIONS.md -----------------------------------------------------------------


def test_operations_guide_cites_only_tests_that_exist() -> None:
    """Each step of the guide either names the test that exercises it or says it is not
    exercised: the tests it names must exist."""
    guide = (ROOT / "deploy" / "OPERATIONS.md").read_text()
    cited = set(re.findall(r"tests/[\w/]+\.py", guide))
    assert cited, "the guide names no test"
    assert [t for t in sorted(cited) if not (ROOT / t).is_file()] == []
    for file in ("deploy/env.example", "deploy/healthcheck.py", "deploy/nats/auth.conf"):
        assert file in guide and (ROOT / file).is_file()


def test_compose_intake_requires_a_principal() -> None:
    """Identity as shipped: intake refuses a command that does not name its sender, and only
    the operator (`admin`, the CLI) may record another actor (a person)."""
    env = compose_service_environment("intake")
    with pytest.MonkeyPatch.context() as monkeypatch:
        for key in [k for k in os.environ if k.startswith("PORTFOLIO_")]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            if key.startswith("PORTFOLIO_"):
                monkeypatch.setenv(key, value)
        settings = IntakeSettings()
    assert settings.require_principal is True
    assert settings.actor_bindings == {"admin": ["*"]}
