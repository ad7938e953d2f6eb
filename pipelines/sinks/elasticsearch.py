"""The Elasticsearch sink: the official client (8.x) under the shared `SearchSink`.

Client range: `elasticsearch>=8.13,<9`. An 8.x client sends
`Accept/Content-Type: application/vnd.elasticsearch+json; compatible-with=8`, which an
8.x server takes natively and a 9.x server takes through REST API compatibility. A 9.x
client sends `compatible-with=9`, which every 8.x server rejects, so it is not allowed.
"""

from __future__ import annotations

from typing import Any

import elastic_transport
from elasticsearch import ApiError, Elasticsearch

from pipelines.sinks.engine import (
    RETRIABLE_STATUS,
    EngineError,
    EngineResponse,
    RetriableError,
    SearchSink,
)
from pipelines.sinks.settings import SinkSettings

# The client rewrites these to the vendor compatibility mimetype of its own major version.
JSON = {"content-type": "application/json", "accept": "application/json"}
NDJSON = {"content-type": "application/x-ndjson", "accept": "application/json"}


class ElasticsearchSink(SearchSink):
    engine = "Elasticsearch"

    def __init__(self, settings: SinkSettings, **kw: Any) -> None:
        super().__init__(settings.url, prefix=settings.prefix, **kw)
        auth: dict[str, Any] = {}
        if settings.ca_certs:
            auth["ca_certs"] = settings.ca_certs
        if settings.api_key:
            auth["api_key"] = settings.api_key
        elif settings.user:
            auth["basic_auth"] = (settings.user, settings.password or "")
        self.client = Elasticsearch(
            settings.url,
            verify_certs=not settings.insecure,
            ssl_show_warn=False,  # --insecure already warned once, in plain words
            request_timeout=settings.timeout,
            max_retries=0,  # retries are ours (backoff + dead letters), not the client's
            retry_on_timeout=False,
            **auth,
        )

    def request(self, method: str, path: str, body: Any = None,
                params: dict[str, str] | None = None) -> EngineResponse:
        headers = NDJSON if path.endswith("/_bulk") else JSON
        try:
            resp = self.client.perform_request(method, path, params=params, headers=headers,
                                               body=body)
        except ApiError as exc:
            status = exc.meta.status
            if status == 404:
                return EngineResponse(404, exc.body)
            if status in RETRIABLE_STATUS:
                raise RetriableError(f"HTTP {status} {exc.message}", status) from None
            raise EngineError(f"{exc.message}: {_reason(exc.body)}", status) from None
        except elastic_transport.TransportError as exc:  # connection refused / reset / timeout
            raise RetriableError(f"{type(exc).__name__}: {exc.message}"[:300]) from None
        return EngineResponse(resp.meta.status, resp.body)

    def bulk(self, payload: bytes) -> dict[str, Any]:
        resp = self.request("POST", "/_bulk", payload)
        return resp.body if isinstance(resp.body, dict) else {}

    def close(self) -> None:
        self.client.close()


def _reason(body: Any) -> str:
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            return f"{err.get('type')}: {err.get('reason')}"[:500]
        return str(err or body)[:500]
    return str(body)[:500]
