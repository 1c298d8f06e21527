"""Session fixtures for ringgate's end-to-end client tests.

One mock-llm and one ringgate are started for the whole session:

    client (openai SDK) -> ringgate (127.0.0.1:GW_PORT) -> mock-llm (127.0.0.1:MOCK_PORT/v1)

Configurations are data: dicts (see `gateway_config` and `merged`) dumped as YAML. Both
binaries listen on port 0 and are started with `--ready-file`; the harness waits for that
file and reads the ports from it, as the Rust harness (tests/common/process.rs) does, so no test
races another for a port.

Binaries come from target/debug (or $CARGO_TARGET_DIR/debug), overridable with
RINGGATE_BIN and MOCK_BIN. `bash scripts/test.sh` builds them and runs everything.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import httpx
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 20.0
BUILD_HINT = "build both binaries with `cargo build --workspace --bins`, or run the whole suite with `bash scripts/test.sh`"

T = TypeVar("T")


# --------------------------------------------------------------------------- helpers


def wait_for(what: str, probe: Callable[[], T | None], timeout_s: float = STARTUP_TIMEOUT_S) -> T:
    """Calls `probe` every 10 ms until it returns something other than None, for at most
    `timeout_s`: the one way these tests wait for a condition instead of sleeping."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.01)


def merged(base: dict, patch: dict) -> dict:
    """`base` with `patch` laid over it: dicts merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in patch.items():
        if isinstance(out.get(key), dict) and isinstance(value, dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def _target_dir() -> Path:
    env = os.environ.get("CARGO_TARGET_DIR")
    if env:
        p = Path(env)
        return p if p.is_absolute() else REPO_ROOT / p
    return REPO_ROOT / "target"


def find_binary(name: str, env_var: str) -> Path:
    override = os.environ.get(env_var)
    path = Path(override) if override else _target_dir() / "debug" / name
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.exit(
            f"\n\n*** {name} binary not found or not executable at {path}\n"
            f"*** {BUILD_HINT} (from {REPO_ROOT}),\n"
            f"*** or point {env_var} at an existing binary.\n",
            returncode=1,
        )
    return path


def _tail(path: Path, limit: int = 8000) -> str:
    try:
        data = path.read_text(errors="replace")
    except OSError as e:  # pragma: no cover - diagnostics only
        return f"<could not read {path}: {e}>"
    if len(data) > limit:
        data = "...<snip>...\n" + data[-limit:]
    return data or "<empty>"


def _stop(proc: subprocess.Popen | None, grace_s: float = 5.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=grace_s)
    except ProcessLookupError:
        pass


@dataclass
class Service:
    name: str
    proc: subprocess.Popen
    log_path: Path

    def logs(self) -> str:
        return f"----- {self.name} log ({self.log_path}) -----\n{_tail(self.log_path)}\n"

    def stop(self) -> None:
        _stop(self.proc)


def _launch(name: str, cmd: list[str], run_dir: Path, env: dict | None = None, context: str = "") -> tuple[Service, dict]:
    """Runs `cmd --ready-file RUN_DIR/ready.json` (stdout and stderr into RUN_DIR/NAME.log)
    and waits for that file, which the binary writes atomically once it listens; returns the
    service and the file's JSON. `context` is added to the failure when it never gets ready."""
    ready_path = run_dir / "ready.json"
    log_path = run_dir / f"{name}.log"
    cmd = [*cmd, "--ready-file", str(ready_path)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "RUST_BACKTRACE": "1", **(env or {})},
        )
    svc = Service(name=name, proc=proc, log_path=log_path)

    def ready() -> dict | None:
        if ready_path.exists():
            return json.loads(ready_path.read_text())
        if proc.poll() is not None:
            raise RuntimeError(f"exited with code {proc.returncode} before it was ready")
        return None

    try:
        return svc, wait_for(f"{ready_path}", ready)
    except (TimeoutError, RuntimeError) as e:
        why = str(e)
    svc.stop()
    pytest.fail(f"{name} {why}; command: {' '.join(cmd)}{context}\n{svc.logs()}", pytrace=False)
    raise AssertionError("unreachable")


@dataclass
class MockLlm(Service):
    port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


@dataclass
class Gateway(Service):
    port: int = 0
    control_port: int = 0
    scheme: str = "http"
    host: str = "127.0.0.1"

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    @property
    def control_origin(self) -> str:
        return f"http://127.0.0.1:{self.control_port}"


def _port(ready: dict, key: str) -> int:
    return int(ready[key].rsplit(":", 1)[1])


def start_mock(workdir: Path, args: list[str] | None = None) -> MockLlm:
    binary = find_binary("mock-llm", "MOCK_BIN")
    svc, ready = _launch(
        "mock-llm",
        [str(binary), "--listen", "127.0.0.1:0", *(args or [])],
        Path(tempfile.mkdtemp(prefix="mock-llm-", dir=workdir)),
        context=f" (a mock-llm older than its sources? {BUILD_HINT})",
    )
    return MockLlm(name=svc.name, proc=svc.proc, log_path=svc.log_path, port=_port(ready, "listen"))


def gateway_config(mock_base_url: str, shards: int = 2) -> dict:
    """The standard config: one `mock` provider, alias `fast`, bare model names to `mock`."""
    return {
        "shards": shards,
        "default_provider": "mock",
        "aliases": {"fast": "mock/gpt-4o-mini"},
        "providers": {"mock": {"base_url": mock_base_url, "models": ["gpt-4o-mini", "text-embedding-3-small"]}},
    }


def start_gateway(workdir: Path, config: dict, env: dict | None = None) -> Gateway:
    """Starts ringgate on `config` and waits until it is ready. Unless the config says
    otherwise, both ports are 0 (the ports it got come from its ready file) and shards are
    not pinned (tests share cores). With a `tls` section the gateway serves `localhost`
    over https."""
    binary = find_binary("ringgate", "RINGGATE_BIN")
    config = merged({"listen": "127.0.0.1:0", "control": {"listen": "127.0.0.1:0"}, "pin_cores": False}, config)
    run_dir = Path(tempfile.mkdtemp(prefix="ringgate-", dir=workdir))
    if "governance" in config and "spool_dir" not in config["governance"]:
        # Every governed node spools usage in its own directory (the default is shared).
        config = merged(config, {"governance": {"spool_dir": str(run_dir / "spool")}})
    text = yaml.safe_dump(config, sort_keys=False)
    config_path = run_dir / "ringgate.yaml"
    config_path.write_text(text)
    svc, ready = _launch(
        "ringgate",
        [str(binary), "serve", "--config", str(config_path)],
        run_dir,
        env=env,
        context=f"\n----- config -----\n{text}",
    )
    tls = "tls" in config
    return Gateway(
        name=svc.name,
        proc=svc.proc,
        log_path=svc.log_path,
        port=_port(ready, "data"),
        control_port=_port(ready, "control"),
        scheme="https" if tls else "http",
        host="localhost" if tls else "127.0.0.1",
    )


def start_governed(
    workdir: Path,
    mock_base_url: str,
    database: str,
    admin_token: str,
    governance: dict,
    config: dict | None = None,
    env: dict | None = None,
) -> tuple[Gateway, httpx.Client]:
    """A gateway that requires virtual keys, keeps them in `database` and routes `mock/...`
    to the mock's gpt-4o-mini (`governance` is laid over its governance section: prices,
    flush interval; `config` over the rest: other providers), and a client of its admin API.
    The admin token reaches the gateway through the environment, as in production. The
    caller closes the client and stops the gateway."""
    base = {
        "shards": 2,
        "governance": {
            "database": database,
            "require_virtual_key": True,
            "admin_token": "env.RG_PY_ADMIN_TOKEN",
            **governance,
        },
        "providers": {"mock": {"base_url": mock_base_url, "models": ["gpt-4o-mini"]}},
    }
    gw = start_gateway(workdir, merged(base, config or {}), env={"RG_PY_ADMIN_TOKEN": admin_token, **(env or {})})
    admin = httpx.Client(base_url=gw.control_origin, headers={"authorization": f"Bearer {admin_token}"}, trust_env=False)
    return gw, admin


@contextmanager
def running_mock(workdir: Path, args: list[str] | None = None) -> Iterator[MockLlm]:
    """`start_mock` for a `with` block: the mock is stopped when it ends."""
    mock = start_mock(workdir, args)
    try:
        yield mock
    finally:
        mock.stop()


@contextmanager
def governed_gateway(*args, **kw) -> Iterator[tuple[Gateway, httpx.Client]]:
    """`start_governed` (same arguments) for a `with` block: the admin client is closed and
    the gateway stopped when it ends."""
    gw, admin = start_governed(*args, **kw)
    try:
        yield gw, admin
    finally:
        admin.close()
        gw.stop()


# --------------------------------------------------------------------------- fixtures

_SERVICES: list[Service] = []


@pytest.fixture(scope="session")
def workdir():
    d = Path(tempfile.mkdtemp(prefix="ringgate-pytest-"))
    yield d
    if os.environ.get("RINGGATE_KEEP_LOGS"):
        print(f"\nringgate test logs kept in {d}")
    else:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def mock_llm(workdir):
    svc = start_mock(workdir)
    _SERVICES.append(svc)
    yield svc
    svc.stop()
    _SERVICES.remove(svc)


@pytest.fixture(scope="session")
def gateway(workdir, mock_llm):
    gw = start_gateway(workdir, gateway_config(mock_llm.base_url))
    _SERVICES.append(gw)
    yield gw
    gw.stop()
    _SERVICES.remove(gw)


@pytest.fixture(scope="session")
def http(gateway):
    """A plain httpx client rooted at the gateway (no proxies from the environment)."""
    with httpx.Client(base_url=gateway.origin, trust_env=False, timeout=30.0) as c:
        yield c


def _openai_client(base_url: str, **kw):
    import openai

    return openai.OpenAI(
        base_url=base_url,
        api_key="sk-test-not-a-real-key",
        http_client=openai.DefaultHttpxClient(trust_env=False),
        timeout=30.0,
        **kw,
    )


@pytest.fixture(scope="session")
def client(gateway):
    c = _openai_client(gateway.base_url)
    yield c
    c.close()


@pytest.fixture(scope="session")
def client_no_retry(gateway):
    """For error tests: the SDK would otherwise retry 429/5xx/connection errors."""
    c = _openai_client(gateway.base_url, max_retries=0)
    yield c
    c.close()


# --------------------------------------------------------------------------- reporting


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the services' recent logs to every failing test's report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and _SERVICES:
        for svc in _SERVICES:
            report.sections.append((f"{svc.name} logs", svc.logs()))
