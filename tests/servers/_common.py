"""Shared plumbing for the test-server launchers: paths, versions, ports, processes.

Every launcher binds 127.0.0.1 only, logs the server's output to a file under
``artifact_dir()`` and raises :class:`ServerUnavailable` (with a one-line reason) when
the server cannot be started, so fixtures can turn that into a skip (or a failure in CI).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = Path(os.environ.get("KEYTRAIL_SERVERS_CACHE", REPO_ROOT / ".cache" / "servers"))
VERSIONS_FILE = REPO_ROOT / ".ci" / "versions.env"
LOCALHOST = "127.0.0.1"


class ServerUnavailable(RuntimeError):
    """The server cannot be started here; the message says why and how to fix it."""


def versions() -> dict[str, str]:
    """KEY=VALUE pairs of .ci/versions.env (comments and blank lines ignored)."""
    out: dict[str, str] = {}
    if VERSIONS_FILE.exists():
        for raw in VERSIONS_FILE.read_text().splitlines():
            line = raw.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip().strip("'\"")
    return out


def artifact_dir(name: str) -> Path:
    """A fresh directory for one server instance's logs and data.

    Under $KEYTRAIL_TEST_ARTIFACTS (default <repo>/test-artifacts/servers), so CI keeps
    server logs next to the test report.
    """
    root = Path(os.environ.get("KEYTRAIL_TEST_ARTIFACTS", REPO_ROOT / "test-artifacts")) / "servers"
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=root))


def java_bin() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise ServerUnavailable("no `java` on PATH and JAVA_HOME unset: install a JDK 17 "
                                "(apt-get install openjdk-17-jdk-headless)")
    return found


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((LOCALHOST, port))
        except OSError:
            return False
    # Something listening on another loopback address (::1, 0.0.0.0) would also clash.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((LOCALHOST, port)) != 0


def free_ports(count: int = 1) -> list[int]:
    """`count` distinct free TCP ports on 127.0.0.1 (kernel-assigned, held until all chosen)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((LOCALHOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port() -> int:
    return free_ports(1)[0]


def free_port_in_range(lo: int, hi: int, exclude: Sequence[int] = ()) -> int:
    """A free port in [lo, hi], for servers that only accept a fixed range."""
    candidates = [p for p in range(lo, hi + 1) if p not in exclude]
    random.shuffle(candidates)
    for port in candidates:
        if _port_is_free(port):
            return port
    raise ServerUnavailable(f"no free TCP port on {LOCALHOST} in {lo}-{hi}")


def tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


_LIVE: set[ManagedProcess] = set()


@atexit.register
def _stop_leftovers() -> None:
    """Never leave a server behind when the interpreter exits (crashed test, ^C)."""
    for p in list(_LIVE):
        with contextlib.suppress(Exception):
            p.stop(timeout=10)


class ManagedProcess:
    """A child process in its own process group, output appended to a log file."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, *, cwd: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.cwd = cwd
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 (kept open by the child)
        try:
            log.write(f"\n=== start {self.name}: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.cwd,
                env=self.env,
                start_new_session=True,
            )
        except OSError as e:
            raise ServerUnavailable(f"{self.name}: cannot run {self.argv[0]}: {e}") from e
        finally:
            log.close()
        _LIVE.add(self)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30.0, sig: int = signal.SIGTERM) -> None:
        """Signal the process group, wait, then SIGKILL what is left."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        # children that outlived the leader (same group) go too
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc = None
        _LIVE.discard(self)

    def kill(self) -> None:
        """kill -9, for crash-injection tests."""
        self.stop(timeout=5, sig=signal.SIGKILL)


def wait_until(check: Callable[[], bool], *, timeout: float, what: str,
               procs: Sequence[ManagedProcess] = (), interval: float = 0.5) -> None:
    """Poll `check` until it returns True; fail early when a watched process died."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        for p in procs:
            if p.proc is not None and p.proc.poll() is not None:
                raise ServerUnavailable(
                    f"{p.name} exited with code {p.proc.returncode} before {what}; "
                    f"log {p.log_path}:\n{tail(p.log_path)}")
        try:
            if check():
                return
        except Exception as e:  # readiness probes fail in many ways while starting
            last_exc = e
        time.sleep(interval)
    detail = f" (last error: {last_exc!r})" if last_exc else ""
    logs = "\n".join(f"--- {p.log_path}:\n{tail(p.log_path)}" for p in procs)
    raise ServerUnavailable(f"timed out after {timeout:.0f}s waiting for {what}{detail}\n{logs}")


@contextlib.contextmanager
def timed(label: str, sink: dict[str, float]) -> Iterator[None]:
    t0 = time.monotonic()
    try:
        yield
    finally:
        sink[label] = round(time.monotonic() - t0, 2)
