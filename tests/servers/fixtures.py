"""Pytest fixtures for the real servers (imported by tests/conftest.py).

Each server starts once per session, on first use, and is stopped at session end.
The per-test fixture hands out the launcher object and restarts the server first if an
earlier test stopped or killed it (failure-injection tests may do that):

    @pytest.mark.integration
    def test_sink(opensearch):
        client = OpenSearch(opensearch.url)
        opensearch.stop()      # inject a failure ...
        opensearch.start()     # ... same data dir and port

Fixtures: opensearch, elasticsearch, flink_cluster, seaweedfs, chromium.
When a server cannot start, the test is skipped with the reason; with CI=true it FAILS
instead, so CI can't go green on skipped integration tests. A failed start is remembered
for the session (no retry per test).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ._common import ServerUnavailable
from .chromium import Chromium
from .elasticsearch import ElasticsearchServer
from .flink import FlinkCluster
from .opensearch import OpenSearchServer
from .seaweedfs import SeaweedFSServer

__all__ = [
    "_chromium_session",
    "_elasticsearch_session",
    "_flink_session",
    "_opensearch_session",
    "_seaweedfs_session",
    "chromium",
    "elasticsearch",
    "flink_cluster",
    "opensearch",
    "seaweedfs",
    "server_unavailable",
]



def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def server_unavailable(reason: str) -> None:
    """Skip (locally) or fail (CI=true) the current test because a server can't run."""
    if _in_ci():
        pytest.fail(f"{reason}\n(CI=true: a server that cannot start fails the test "
                    "instead of skipping it)", pytrace=False)
    pytest.skip(reason)


class _Lazy:
    """Starts a server on first request; remembers a failed start for the session."""

    def __init__(self, name: str, factory: Callable[[], Any]) -> None:
        self.name = name
        self.factory = factory
        self.server: Any = None
        self.error: str | None = None

    def get(self) -> Any:
        if self.error is not None:
            server_unavailable(self.error)
        try:
            if self.server is None:
                self.server = self.factory()
            self.server.start()  # no-op when running; restarts after a test stopped it
        except ServerUnavailable as e:
            self.error = f"{self.name} unavailable: {e}"
            server_unavailable(self.error)
        except Exception as e:
            self.error = f"{self.name} failed to start: {type(e).__name__}: {e}"
            server_unavailable(self.error)
        return self.server

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()


def _session(name: str, factory: Callable[[], Any]) -> Iterator[_Lazy]:
    lazy = _Lazy(name, factory)
    try:
        yield lazy
    finally:
        lazy.close()


@pytest.fixture(scope="session")
def _opensearch_session() -> Iterator[_Lazy]:
    yield from _session("OpenSearch", OpenSearchServer)


@pytest.fixture
def opensearch(_opensearch_session: _Lazy) -> OpenSearchServer:
    """A running OpenSearch 2.19 node (.url, .info, .stop(), .start(), .kill())."""
    server: OpenSearchServer = _opensearch_session.get()
    return server


@pytest.fixture(scope="session")
def _elasticsearch_session() -> Iterator[_Lazy]:
    yield from _session("Elasticsearch", ElasticsearchServer)


@pytest.fixture
def elasticsearch(_elasticsearch_session: _Lazy) -> ElasticsearchServer:
    """A running Elasticsearch 8.x node (.url, .info, .stop(), .start(), .kill())."""
    server: ElasticsearchServer = _elasticsearch_session.get()
    return server


@pytest.fixture(scope="session")
def _flink_session() -> Iterator[_Lazy]:
    yield from _session("Flink cluster", FlinkCluster)


@pytest.fixture
def flink_cluster(_flink_session: _Lazy) -> FlinkCluster:
    """A running Flink standalone cluster; .beam_options is the FlinkRunner option list."""
    server: FlinkCluster = _flink_session.get()
    return server


@pytest.fixture(scope="session")
def _seaweedfs_session() -> Iterator[_Lazy]:
    yield from _session("SeaweedFS S3", SeaweedFSServer)


@pytest.fixture
def seaweedfs(_seaweedfs_session: _Lazy) -> SeaweedFSServer:
    """A running S3 store (.info.endpoint_url/.access_key/.secret_key, .client(), .info.env())."""
    server: SeaweedFSServer = _seaweedfs_session.get()
    return server


@pytest.fixture(scope="session")
def _chromium_session() -> Iterator[_Lazy]:
    yield from _session("Chromium", Chromium)


@pytest.fixture
def chromium(_chromium_session: _Lazy) -> Chromium:
    """Headless Chromium: .render(html_path, png_path) -> RenderResult(.errors, .png, ...)."""
    browser: Chromium = _chromium_session.get()
    return browser
