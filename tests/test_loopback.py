"""Every socket keytrail (and the Beam workers it starts) listens on is on loopback.

The multi-file run test watches the real process tree of `keytrail run` while it works:
/proc/<pid>/fd gives the socket inodes each process holds, /proc/net/tcp{,6} says which of
them listen and on what address.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.loopback import (
    BeamInternalsChanged,
    bind_beam_services_to_loopback,
    loopback_address,
)

REPO = Path(__file__).resolve().parents[1]


def _process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        children.setdefault(int(stat[stat.rindex(")") + 2:].split()[1]), []).append(int(d.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _socket_inodes(pids: list[int]) -> dict[str, int]:
    inodes: dict[str, int] = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes[target[8:-1]] = pid
    return inodes


def _decode(hex_addr: str) -> tuple[str, int]:
    """/proc/net/tcp{,6} local_address ('0100007F:1F90') -> ('127.0.0.1', 8080)."""
    host, port = hex_addr.split(":")
    raw = bytes.fromhex(host)
    # the kernel prints each 32-bit word in host (little-endian) order
    raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    addr = ipaddress.ip_address(raw)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped), int(port, 16)
    return str(addr), int(port, 16)


def listening_sockets(root: int) -> set[tuple[str, int, int]]:
    """(address, port, pid) of every TCP listener held by `root` or its descendants."""
    inodes = _socket_inodes(_process_tree(root))
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A" and f[9] in inodes:  # 0A = TCP_LISTEN
                addr, port = _decode(f[1])
                found.add((addr, port, inodes[f[9]]))
    return found


def _is_loopback(addr: str) -> bool:
    return ipaddress.ip_address(addr).is_loopback


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc/net/tcp")
def test_multi_file_run_listens_on_loopback_only(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "run",
                             str(REPO / "sample_logs"), "--out", str(tmp_path / "out"),
                             "--quiet"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen: set[tuple[str, int, int]] = set()
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:
        seen |= listening_sockets(proc.pid)
        time.sleep(0.02)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()[-2000:]
    # several input files -> multi-process workers -> Beam's gRPC services are up; if
    # none were seen the sampling missed them and the test would prove nothing
    assert seen, "no listener observed during a multi-file run"
    public = sorted(s for s in seen if not _is_loopback(s[0]))
    assert not public, f"listeners on non-loopback addresses: {public}"


def test_loopback_worker_pool_of_flink_runs_binds_loopback() -> None:
    """The LOOPBACK environment (Flink) starts a worker pool in keytrail's process."""
    from apache_beam.runners.worker.worker_pool_main import BeamFnExternalWorkerPoolServicer

    bind_beam_services_to_loopback()
    _, server = BeamFnExternalWorkerPoolServicer.start()
    try:
        mine = listening_sockets(os.getpid())
        assert mine, "the worker pool listens on nothing?"
        assert all(_is_loopback(a) for a, _, _ in mine), mine
    finally:
        server.stop(0)


def test_unknown_bind_address_fails_loudly() -> None:
    assert loopback_address("[::]:0") == "127.0.0.1:0"
    assert loopback_address("0.0.0.0:8099") == "127.0.0.1:8099"
    assert loopback_address("localhost:5") == "localhost:5"
    with pytest.raises(BeamInternalsChanged):
        loopback_address("10.1.2.3:80")
    with pytest.raises(BeamInternalsChanged):
        loopback_address("unix:/tmp/x")
