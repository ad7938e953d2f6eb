"""The elasticsearch-client path, as recorded requests.

A real Elasticsearch node is used when tests/servers/elasticsearch.py can start one (see
test_against_real_elasticsearch). Otherwise this file checks the exact requests the
official client sends, against an in-process recorder that answers like an Elasticsearch
8 node: including the 400 an 8.x node gives a `compatible-with=9` request, which is why
the client is pinned to 8.x (an 8.x client's `compatible-with=8` works on 8.x natively and
on 9.x through REST API compatibility)."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from dashboards.fields import FAMILIES, family_mapping
from pipelines import sinks
from pipelines.sinks.settings import SinkSettings
from pipelines.sinks.setup import install
from pipelines.store import iter_event_rows
from tests.recording_server import Recorded, RecordingServer
from tests.sink_helpers import local_store

ES_HEADERS = {"X-Elastic-Product": "Elasticsearch", "content-type": "application/json"}
COMPAT_JSON = "application/vnd.elasticsearch+json; compatible-with=8"
COMPAT_NDJSON = "application/vnd.elasticsearch+x-ndjson; compatible-with=8"


class FakeEs8:
    """Answers like Elasticsearch 8.15 with security and ILM enabled."""

    def __init__(self) -> None:
        self.templates: dict[str, Any] = {}
        self.docs: dict[tuple[str, str], Any] = {}
        self.roles: dict[str, Any] = {}

    def __call__(self, r: Recorded) -> tuple[int, dict[str, str], Any]:
        accept = r.headers.get("accept", "")
        if "compatible-with=9" in accept or "compatible-with=9" in r.headers.get(
                "content-type", ""):
            return 400, ES_HEADERS, {"error": {"type": "media_type_header_exception",
                                               "reason": "Accept version must be either "
                                               "version 8 or 7, but found 9"}, "status": 400}
        path = r.path.split("?")[0]
        if r.method == "GET" and path == "/":
            return 200, ES_HEADERS, {"name": "n", "cluster_name": "c", "version": {
                "number": "8.15.0", "build_flavor": "default"}, "tagline": "You Know, for Search"}
        if path.startswith("/_index_template/"):
            name = path.rsplit("/", 1)[1]
            if r.method == "PUT":
                self.templates[name] = json.loads(r.body)
                return 200, ES_HEADERS, {"acknowledged": True}
            if name in self.templates:
                return 200, ES_HEADERS, {"index_templates": [{"name": name}]}
            return 404, ES_HEADERS, {"error": {"type": "resource_not_found_exception"},
                                     "status": 404}
        if path.startswith("/_ilm/policy/") and r.method == "PUT":
            return 200, ES_HEADERS, {"acknowledged": True}
        if path.startswith("/_security/role/") and r.method == "PUT":
            self.roles[path.rsplit("/", 1)[1]] = json.loads(r.body)
            return 200, ES_HEADERS, {"role": {"created": True}}
        if path == "/_bulk":
            lines = r.body.splitlines()
            items = []
            for i in range(0, len(lines), 2):
                (op, meta), = orjson.loads(lines[i]).items()
                key = (meta["_index"], meta["_id"])
                existed = key in self.docs
                self.docs[key] = orjson.loads(lines[i + 1])
                items.append({op: {"_index": meta["_index"], "_id": meta["_id"],
                                   "status": 200 if existed else 201,
                                   "result": "updated" if existed else "created"}})
            return 200, ES_HEADERS, {"took": 1, "errors": False, "items": items}
        return 404, ES_HEADERS, {"error": {"type": "no_handler"}, "status": 404}


def _settings(url: str, **kw: Any) -> SinkSettings:
    return SinkSettings(kind="elasticsearch", url=url, **kw)


def test_client_is_8x_and_speaks_compatible_with_8() -> None:
    import elasticsearch

    assert elasticsearch.__versionstr__.startswith("8."), (
        "pyproject pins elasticsearch>=8.13,<9: a 9.x client breaks 8.x clusters")


def test_setup_and_delivery_requests(tmp_path: Any) -> None:
    fake = FakeEs8()
    with RecordingServer(fake) as srv:
        sink = sinks.make_sink(_settings(srv.url, api_key="a2V5OnNlY3JldA=="))
        lines = install(sink, roles_out=tmp_path / "roles")
        assert lines[0] == f"Elasticsearch 8.15.0 at {srv.url}"
        assert any("ILM policy keytrail-events" in x for x in lines)
        assert {"keytrail_writer", "keytrail_analyst", "keytrail_auditor"} == set(fake.roles)
        ev = fake.templates["keytrail-events"]
        assert ev["template"]["settings"]["index"]["lifecycle"] == {"name": "keytrail-events"}
        assert fake.templates["keytrail-alerts"]["template"]["mappings"]["dynamic"] == "strict"
        sink.close()

        out = local_store()
        report = sinks.deliver(str(out), _settings(srv.url, api_key="a2V5OnNlY3JldA=="))
        again = sinks.deliver(str(out), _settings(srv.url, api_key="a2V5OnNlY3JldA=="))

    for r in srv.requests:
        assert r.headers["authorization"] == "ApiKey a2V5OnNlY3JldA=="
        assert r.headers["accept"] == COMPAT_JSON
    bulks = [r for r in srv.requests if r.path.startswith("/_bulk")]
    assert bulks and all(r.headers["content-type"] == COMPAT_NDJSON for r in bulks)
    puts = [r for r in srv.requests if r.method == "PUT"]
    assert all(r.headers["content-type"] == COMPAT_JSON for r in puts)
    # Every action names index and _id; events (the evidence) go first; alerts are
    # whole-document writes keeping the analyst's status (this fake has no _mget: the
    # partial-update fallback).
    first = bulks[0].body.splitlines()
    header = orjson.loads(first[0])
    assert header == {"index": {"_index": header["index"]["_index"],
                                "_id": header["index"]["_id"]}}
    assert header["index"]["_index"].startswith("keytrail-events-")
    alert_lines = [orjson.loads(b.body.splitlines()[i + 1]) for b in bulks
                   for i, line in enumerate(b.body.splitlines())
                   if line.startswith(b'{"update"')]
    assert alert_lines and all("status" not in a["doc"]["keytrail"]["alert"]
                               and a["upsert"]["keytrail"]["alert"]["status"] == "open"
                               for a in alert_lines)
    summary = orjson.loads((out / "run_summary.json").read_bytes())
    assert report["inventory"]["indexed"] == summary["keys"]
    assert report["alerts"]["indexed"] == summary["alerts_total"]
    assert report["edges"]["indexed"] == summary["edges"] + summary["resource_edges"]
    # The same record read twice (e.g. a log and its .gz copy) has one event.id: one doc.
    event_ids = {r["event.id"] for r in iter_event_rows(out)}
    assert report["events"]["indexed"] == len(event_ids)
    assert report["events"]["indexed"] + report["events"]["updated"] == summary["totals"][
        "events"]
    assert all(again[f]["indexed"] == 0
               and again[f]["updated"] == report[f]["indexed"] + report[f]["updated"]
               for f in ("events", "inventory", "edges", "alerts"))
    assert len(fake.docs) == sum(report[f]["indexed"] for f in
                                 ("events", "inventory", "edges", "alerts"))


def test_a_9x_style_request_is_refused_by_an_8x_node() -> None:
    """Why the pin matters: the recorder refuses compatible-with=9 exactly like ES 8."""
    import urllib.error
    import urllib.request

    with RecordingServer(FakeEs8()) as srv:
        req = urllib.request.Request(srv.url + "/", headers={
            "accept": "application/vnd.elasticsearch+json; compatible-with=9"})
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(req)
        assert exc.value.code == 400


def test_delivery_refuses_to_start_without_templates() -> None:
    with RecordingServer(FakeEs8()) as srv, pytest.raises(sinks.SinkError,
                                                       match="keytrail setup"):
        sinks.deliver(str(local_store()), _settings(srv.url))


def test_security_disabled_writes_role_files(tmp_path: Any) -> None:
    class NoSecurity(FakeEs8):
        def __call__(self, r: Recorded) -> tuple[int, dict[str, str], Any]:
            if r.path.startswith("/_security/"):
                return 500, ES_HEADERS, {"error": {
                    "type": "security_exception", "reason": "Security must be explicitly "
                    "enabled when using a [basic] license."}, "status": 500}
            return super().__call__(r)

    with RecordingServer(NoSecurity()) as srv:
        sink = sinks.make_sink(_settings(srv.url))
        lines = install(sink, roles_out=tmp_path)
    assert any("roles not installed" in x for x in lines)
    written = json.loads((tmp_path / "roles-elasticsearch.json").read_text())
    assert set(written) == {"keytrail_writer", "keytrail_analyst", "keytrail_auditor"}


@pytest.mark.integration
def test_against_real_elasticsearch(elasticsearch: Any, tmp_path: Any) -> None:
    """A real Elasticsearch 8 node from Maven Central artifacts (tests/servers)."""
    url = elasticsearch.url
    settings = _settings(url, prefix="ktes")
    sink = sinks.make_sink(settings)
    lines = install(sink, roles_out=tmp_path)
    assert lines[0].startswith("Elasticsearch 8.")
    print("\n".join(lines))
    # This node has no x-pack: ILM and roles must degrade with a clear line, not fail.
    assert any(x.startswith(("ILM policy ktes-events", "ILM unavailable")) for x in lines)
    assert any(x.startswith(("role ktes_writer", "roles not installed")) for x in lines)
    out = local_store()
    first = sinks.deliver(str(out), settings)
    second = sinks.deliver(str(out), settings)
    for f in ("events", "inventory", "edges", "alerts"):
        assert first[f]["failed"] == 0
        assert second[f]["indexed"] == 0
        assert second[f]["updated"] == first[f]["indexed"] + first[f]["updated"]
    inv = orjson.loads((out / "inventory.json").read_bytes())
    assert sinks.read_inventory(settings) == sorted(inv, key=lambda r: r["uid"])
    local_alerts = {a["keytrail.alert.id"]: a for a in (
        orjson.loads(x) for x in (out / "alerts.ndjson").read_bytes().splitlines())}
    assert {a["keytrail.alert.id"]: a for a in sinks.read_alerts(settings)} == local_alerts
    # Mappings after indexing are exactly the templates: no dynamic-mapping surprises.
    mappings = sink.request("GET", "/ktes-*/_mapping").body
    for index, m in mappings.items():
        family = next(f for f in FAMILIES if index.startswith(f"ktes-{f}"))
        assert _norm(m["mappings"]) == _norm(family_mapping(family)), index
    sink.close()


def _norm(m: Any) -> Any:
    if isinstance(m, dict):
        return {k: _norm(v) for k, v in m.items()}
    return (m == "true") if m in ("true", "false") else m
