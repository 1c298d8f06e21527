"""Session fixtures for ringgate's end-to-end client tests.

One mock-llm and one ringgate are started for the whole session:

    client (openai SDK) -> ringgate (127.0.0.1:GW_PORT) -> mock-llm (127.0.0.1:MOCK_PORT/v1)

Binaries come from target/debug (or $CARGO_TARGET_DIR/debug), overridable with
RINGGATE_BIN and MOCK_BIN. Build them with `cargo build --workspace --bins`.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import ssl
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 20.0
BUILD_CMD = "cargo build --workspace --bins"

MOCK_MODELS = ["gpt-4o-mini", "text-embedding-3-small"]
ALIASES = {"fast": "mock/gpt-4o-mini"}


# --------------------------------------------------------------------------- helpers


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
            f"*** build it with:  (cd {REPO_ROOT} && {BUILD_CMD})\n"
            f"*** or point {env_var} at an existing binary.\n",
            returncode=1,
        )
    return path


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    stderr_path: Path
    stdout_path: Path | None = None
    extra: dict = field(default_factory=dict)

    def logs(self) -> str:
        out = f"----- {self.name} stderr ({self.stderr_path}) -----\n{_tail(self.stderr_path)}\n"
        if self.stdout_path is not None:
            out += f"----- {self.name} stdout ({self.stdout_path}) -----\n{_tail(self.stdout_path)}\n"
        return out

    def stop(self) -> None:
        _stop(self.proc)


@dataclass
class MockLlm(Service):
    port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


@dataclass
class Gateway(Service):
    port: int = 0
    config_path: Path | None = None
    scheme: str = "http"
    host: str = "127.0.0.1"

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"


_LISTEN_RE = re.compile(r"mock-llm listening on (\S+):(\d+)")


def start_mock(workdir: Path, args: list[str] | None = None) -> MockLlm:
    binary = find_binary("mock-llm", "MOCK_BIN")
    stderr_path = workdir / "mock-llm.stderr"
    stdout_path = workdir / "mock-llm.stdout"
    cmd = [str(binary), "--listen", "127.0.0.1:0", *(args or [])]
    stderr_f = open(stderr_path, "wb")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr_f, stdin=subprocess.DEVNULL)
    stderr_f.close()

    # Read stdout on a thread so a silent process cannot block us past the deadline.
    found: dict = {}
    ready = threading.Event()

    def pump() -> None:
        with open(stdout_path, "wb") as out:
            assert proc.stdout is not None
            for raw in iter(proc.stdout.readline, b""):
                out.write(raw)
                out.flush()
                m = _LISTEN_RE.search(raw.decode(errors="replace"))
                if m and not ready.is_set():
                    found["port"] = int(m.group(2))
                    ready.set()
        ready.set()  # EOF: process exited or closed stdout

    threading.Thread(target=pump, name="mock-llm-stdout", daemon=True).start()
    ready.wait(STARTUP_TIMEOUT_S)

    svc = MockLlm(name="mock-llm", proc=proc, stderr_path=stderr_path, stdout_path=stdout_path)
    if "port" not in found:
        try:
            code = proc.wait(timeout=1)
            why = f"exited with code {code} before printing"
        except subprocess.TimeoutExpired:
            why = f"did not print within {STARTUP_TIMEOUT_S}s"
        svc.stop()
        pytest.fail(
            f"mock-llm {why} 'mock-llm listening on 127.0.0.1:PORT'; command: {' '.join(cmd)}\n{svc.logs()}",
            pytrace=False,
        )
    svc.port = found["port"]
    return svc


def gateway_config_yaml(gw_port: int, mock_base_url: str, shards: int = 2, extra: str = "") -> str:
    models = ", ".join(MOCK_MODELS)
    aliases = "".join(f"  {k}: {v}\n" for k, v in ALIASES.items())
    return (
        f"listen: 127.0.0.1:{gw_port}\n"
        f"shards: {shards}\n"
        f"pin_cores: false\n"
        f"default_provider: mock\n"
        f"aliases:\n{aliases}"
        f"providers:\n"
        f"  mock:\n"
        f"    base_url: {mock_base_url}\n"
        f"    models: [{models}]\n"
        f"{extra}"
    )


def start_gateway(
    workdir: Path,
    config_yaml: str,
    port: int,
    env: dict | None = None,
    tls_ca: str | None = None,
) -> Gateway:
    """Starts ringgate and waits for /health. With `tls_ca` (a CA PEM path) the gateway is
    expected to serve TLS for `localhost`, and health is checked over https."""
    binary = find_binary("ringgate", "RINGGATE_BIN")
    if not any(line.startswith("control:") for line in config_yaml.splitlines()):
        config_yaml = f"control: {{listen: 127.0.0.1:{free_port()}}}\n" + config_yaml
    config_path = workdir / f"ringgate-{port}.yaml"
    config_path.write_text(config_yaml)
    stderr_path = workdir / f"ringgate-{port}.stderr"
    stdout_path = workdir / f"ringgate-{port}.stdout"
    cmd = [str(binary), "serve", "--config", str(config_path)]
    with open(stderr_path, "wb") as err, open(stdout_path, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "RUST_BACKTRACE": "1", **(env or {})},
        )
    gw = Gateway(
        name="ringgate",
        proc=proc,
        stderr_path=stderr_path,
        stdout_path=stdout_path,
        port=port,
        config_path=config_path,
        scheme="https" if tls_ca else "http",
        host="localhost" if tls_ca else "127.0.0.1",
    )

    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    last = "no attempt yet"
    with httpx.Client(trust_env=False, timeout=2.0, verify=ssl.create_default_context(cafile=tls_ca) if tls_ca else True) as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                last = f"process exited with code {proc.returncode}"
                break
            try:
                r = http.get(f"{gw.origin}/health")
                if r.status_code == 200:
                    return gw
                last = f"GET /health -> {r.status_code} {r.text[:200]!r}"
            except httpx.HTTPError as e:
                last = f"GET /health -> {type(e).__name__}: {e}"
            time.sleep(0.1)
    gw.stop()
    pytest.fail(
        f"ringgate did not become healthy within {STARTUP_TIMEOUT_S}s ({last}); command: {' '.join(cmd)}\n"
        f"----- config -----\n{config_yaml}\n{gw.logs()}",
        pytrace=False,
    )
    raise AssertionError("unreachable")


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
    # A free port can be taken between probing and binding; try a few times.
    last_err: BaseException | None = None
    for _ in range(3):
        port = free_port()
        try:
            gw = start_gateway(workdir, gateway_config_yaml(port, mock_llm.base_url), port)
            break
        except pytest.fail.Exception as e:
            last_err = e
            if mock_llm.proc.poll() is not None:
                raise
            if "address" not in _tail(workdir / f"ringgate-{port}.stderr").lower():
                raise  # not a port clash: don't hide the real failure
    else:
        assert last_err is not None
        raise last_err
    gw.extra["mock"] = mock_llm
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
    """Attach the services' recent stderr to every failing test's report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and _SERVICES:
        for svc in _SERVICES:
            report.sections.append((f"{svc.name} logs", svc.logs()))
