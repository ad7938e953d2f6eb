"""Launchers for the real servers the integration tests use (DESIGN.md section 8).

Each launcher binds 127.0.0.1 only, picks free ports, logs to a file under
test-artifacts/servers/, and raises ServerUnavailable with a clear reason when it cannot
start. Pytest fixtures wrapping them live in tests/servers/fixtures.py.
"""

from ._common import ServerUnavailable, versions

__all__ = ["ServerUnavailable", "versions"]
