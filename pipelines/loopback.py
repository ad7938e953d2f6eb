"""Keeps every gRPC service Beam starts inside keytrail's process on the loopback interface.

Beam 2.62 has no option for the bind address of the services its local runners start:
the FnApiRunner's control/data/state/logging servers (fn_api_runner/worker_handlers.py),
the per-worker logging server of multi-process mode (local_job_service.py), the LOOPBACK
worker pool used with Flink (worker_pool_main.py) and the in-process job service's
artifact server (abstract_job_service.py) all call `add_insecure_port('[::]:<port>')`,
i.e. every interface, unauthenticated; the artifact service serves any local file. The
clients they hand out are always `localhost:<port>`, so binding 127.0.0.1 changes nothing
for them. `bind_beam_services_to_loopback()` swaps the `grpc` name in exactly those
modules for a proxy whose `server()` returns servers that bind 127.0.0.1 instead of the
wildcard. It fails loudly (BeamInternalsChanged) when a module is gone, no longer uses
`grpc.server`, or asks for an address this override does not recognise, rather than
silently leaving a port open; tests/test_loopback.py checks the real listeners of a run.
"""

from __future__ import annotations

import importlib
import inspect
import re
from types import ModuleType
from typing import Any

import grpc

# Beam modules whose servers would otherwise bind the wildcard address (Beam 2.62).
BEAM_SERVER_MODULES = (
    "apache_beam.runners.portability.fn_api_runner.worker_handlers",
    "apache_beam.runners.portability.local_job_service",
    "apache_beam.runners.worker.worker_pool_main",
    "apache_beam.runners.portability.abstract_job_service",
)
LOOPBACK_HOST = "127.0.0.1"
_WILDCARD = re.compile(r"^(?:\[::\]|0\.0\.0\.0|):(\d+)$")
_LOOPBACK = re.compile(r"^(?:localhost|127\.0\.0\.1|\[::1\]):(\d+)$")


class BeamInternalsChanged(RuntimeError):
    """Beam no longer starts its servers the way this override expects: review it."""


def loopback_address(address: str) -> str:
    """`[::]:N` / `0.0.0.0:N` -> `127.0.0.1:N`; loopback addresses unchanged; else an error."""
    if _LOOPBACK.match(address):
        return address
    m = _WILDCARD.match(address)
    if m is None:
        raise BeamInternalsChanged(
            f"Beam asked to bind {address!r}; keytrail only knows how to keep '[::]:N' on "
            "loopback. Review pipelines/loopback.py for this Beam version.")
    return f"{LOOPBACK_HOST}:{m.group(1)}"


class _LoopbackGrpc(ModuleType):
    """The real `grpc` module, except that `server()` returns loopback-only servers."""

    def __init__(self) -> None:
        super().__init__("grpc")

    def __getattr__(self, name: str) -> Any:
        return getattr(grpc, name)

    @staticmethod
    def server(*args: Any, **kwargs: Any) -> grpc.Server:
        srv = grpc.server(*args, **kwargs)
        real_add = srv.add_insecure_port

        def add_insecure_port(address: str) -> int:
            return int(real_add(loopback_address(address)))

        def add_secure_port(address: str, credentials: Any) -> int:  # not used by Beam 2.62
            raise BeamInternalsChanged(f"Beam asked for a TLS port {address!r}: review "
                                       "pipelines/loopback.py")

        # Instance attributes shadow the methods only on this server object.
        srv.add_insecure_port = add_insecure_port
        srv.add_secure_port = add_secure_port
        return srv


_PROXY = _LoopbackGrpc()


def bind_beam_services_to_loopback() -> None:
    """Idempotent; call before a Beam pipeline is built or run in this process."""
    for name in BEAM_SERVER_MODULES:
        try:
            mod = importlib.import_module(name)
        except ImportError as e:
            raise BeamInternalsChanged(f"{name} is gone ({e}): review pipelines/loopback.py "
                                       "for this Beam version") from e
        current = getattr(mod, "grpc", None)
        if current is _PROXY:
            continue
        if current is not grpc:
            raise BeamInternalsChanged(f"{name} no longer imports grpc as 'grpc': review "
                                       "pipelines/loopback.py for this Beam version")
        if "grpc.server(" not in inspect.getsource(mod):
            raise BeamInternalsChanged(f"{name} no longer calls grpc.server(): review "
                                       "pipelines/loopback.py for this Beam version")
        mod.grpc = _PROXY  # type: ignore[attr-defined]
