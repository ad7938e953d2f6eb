"""The OpenSearch sink: opensearch-py transport under the shared `SearchSink`."""

from __future__ import annotations

from typing import Any

from opensearchpy import OpenSearch
from opensearchpy import exceptions as osx

from pipelines.sinks.engine import (
    RETRIABLE_STATUS,
    EngineError,
    EngineResponse,
    RetriableError,
    SearchSink,
)
from pipelines.sinks.settings import SinkSettings

JSON = {"content-type": "application/json", "accept": "application/json"}


class OpenSearchSink(SearchSink):
    engine = "OpenSearch"

    def __init__(self, settings: SinkSettings, **kw: Any) -> None:
        super().__init__(settings.url, prefix=settings.prefix, **kw)
        headers: dict[str, str] = {}
        http_auth: tuple[str, str] | None = None
        if settings.api_key:
            headers["authorization"] = f"ApiKey {settings.api_key}"
        elif settings.user:
            http_auth = (settings.user, settings.password or "")
        self.client = OpenSearch(
            hosts=[settings.url],
            http_auth=http_auth,
            headers=headers or None,
            verify_certs=not settings.insecure,
            ssl_show_warn=False,  # --insecure already warned once, in plain words
            ca_certs=settings.ca_certs,
            timeout=settings.timeout,
            max_retries=0,  # retries are ours (backoff + dead letters), not the client's
            retry_on_timeout=False,
        )

    def request(self, method: str, path: str, body: Any = None,
                params: dict[str, str] | None = None) -> EngineResponse:
        try:
            out = self.client.transport.perform_request(
                method, path, params=params or {}, body=body, headers=JSON)
        except osx.ConnectionError as exc:  # includes ConnectionTimeout and SSLError
            raise RetriableError(_conn_reason(exc)) from None
        except osx.TransportError as exc:
            status = exc.status_code if isinstance(exc.status_code, int) else None
            if status == 404:
                return EngineResponse(404, exc.info)
            if status in RETRIABLE_STATUS:
                raise RetriableError(f"HTTP {status} {exc.error}", status) from None
            raise EngineError(f"{exc.error}: {_reason(exc.info)}", status) from None
        return EngineResponse(200, out)

    def bulk(self, payload: bytes) -> dict[str, Any]:
        resp = self.request("POST", "/_bulk", payload)
        return resp.body if isinstance(resp.body, dict) else {}

    def close(self) -> None:
        self.client.close()


def _conn_reason(exc: Exception) -> str:
    info = getattr(exc, "info", None)
    return f"{type(exc).__name__}: {info or exc}"[:300]


def _reason(info: Any) -> str:
    if isinstance(info, dict):
        err = info.get("error")
        if isinstance(err, dict):
            return f"{err.get('type')}: {err.get('reason')}"[:500]
        return str(err or info)[:500]
    return str(info)[:500]
