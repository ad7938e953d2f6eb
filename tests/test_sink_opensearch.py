"""The OpenSearch sink against a real OpenSearch 2.19 node (tests/servers, DESIGN.md 8):
setup, a full run, a re-run without duplicates, the dashboards' queries, mappings without
dynamic surprises, read-back, and failure injection (an in-process TCP proxy in front of
the real node stops mid-delivery; after it is back, replay restores the exact _id set)."""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from dashboards.fields import FAMILIES, family_mapping, index_name
from parsers.base import KeytrailError
from pipelines import sinks
from pipelines.sinks.documents import Action, store_actions
from pipelines.sinks.engine import RetryPolicy, SearchSink
from pipelines.sinks.settings import SinkSettings
from pipelines.store import iter_event_rows
from tests.sink_helpers import local_store

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


@pytest.fixture
def os_url(opensearch: Any) -> str:
    """URL of the session's real OpenSearch node (tests/servers/fixtures.py)."""
    return str(opensearch.url).rstrip("/")


def _settings(url: str, prefix: str) -> SinkSettings:
    return SinkSettings(kind="opensearch", url=url, prefix=prefix)


def _sink(url: str, prefix: str, **kw: Any) -> SearchSink:
    return sinks.make_sink(_settings(url, prefix), **kw)


def _cli(argv: list[str]) -> tuple[int, str]:
    ap = argparse.ArgumentParser(prog="keytrail")
    sub = ap.add_subparsers(dest="command", required=True)
    handlers: dict[str, Any] = {}
    sinks.add_cli(sub, handlers)
    args = ap.parse_args(argv)
    try:
        return handlers[args.command](args, []), ""
    except KeytrailError as exc:
        return 2, str(exc)


def _setup(url: str, prefix: str, tmp: Path) -> None:
    rc, msg = _cli(["setup", "--sink", "opensearch", "--sink-url", url, "--index-prefix",
                    prefix, "--roles-out", str(tmp)])
    assert rc == 0, msg


def _req(sink: SearchSink, method: str, path: str, body: Any = None,
         params: dict[str, str] | None = None) -> Any:
    return sink.request(method, path, body, params).body


def _ids(sink: SearchSink, prefix: str) -> set[tuple[str, str]]:
    _req(sink, "POST", f"/{prefix}-*/_refresh")
    body = _req(sink, "POST", f"/{prefix}-*/_search", {
        "size": 10000, "_source": False, "query": {"match_all": {}}})
    hits = body["hits"]["hits"]
    assert len(hits) < 10000
    return {(h["_index"], h["_id"]) for h in hits}


def _wipe(sink: SearchSink, prefix: str) -> None:
    """Start from no indices of this prefix (the node may be shared or reused)."""
    for name in _req(sink, "GET", f"/{prefix}-*/_alias"):
        _req(sink, "DELETE", f"/{name}")


def _expected(out: Path, prefix: str) -> set[tuple[str, str]]:
    return {(a.index, a.id) for a in store_actions(out, prefix)}


def _count(sink: SearchSink, index: str, query: dict[str, Any] | None = None) -> int:
    body = _req(sink, "POST", f"/{index}/_count", {"query": query or {"match_all": {}}})
    return int(body["count"])


_DELIVERED: dict[str, tuple[Path, dict[str, Any], str]] = {}


@pytest.fixture
def delivered(os_url: str, tmp_path_factory: pytest.TempPathFactory
              ) -> tuple[Path, dict[str, Any], str]:
    """setup + one full delivery of the sample run under the prefix 'ktfull' (once per
    node: the result is shared by the tests that read it)."""
    if os_url not in _DELIVERED:
        prefix = "ktfull"
        _setup(os_url, prefix, tmp_path_factory.mktemp("roles"))
        _wipe(_sink(os_url, prefix), prefix)
        out = local_store()
        report = sinks.deliver(str(out), _settings(os_url, prefix))
        _DELIVERED[os_url] = (out, report, prefix)
    return _DELIVERED[os_url]


def test_setup_installs_templates_policy_and_roles(os_url: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    _setup(os_url, "ktsetup", tmp_path)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("OpenSearch 2.19")
    sink = _sink(os_url, "ktsetup")
    for family in FAMILIES:
        body = _req(sink, "GET", f"/_index_template/ktsetup-{family}")
        (tpl,) = body["index_templates"]
        assert tpl["index_template"]["template"]["mappings"]["properties"] == \
            family_mapping(family)["properties"]
    # ISM and roles: installed, or a clear line saying why not and what was written.
    assert any(x.startswith(("ISM policy ktsetup-events", "ISM unavailable")) for x in lines)
    assert any(x.startswith(("role ktsetup_writer", "roles not installed")) for x in lines)
    if any(x.startswith("roles not installed") for x in lines):
        roles = json.loads((tmp_path / "roles-opensearch.json").read_text())
        assert set(roles) == {"ktsetup_writer", "ktsetup_analyst", "ktsetup_auditor"}
    # Setup is repeatable.
    _setup(os_url, "ktsetup", tmp_path)


def test_full_run_lands_every_document_once(os_url: str,
                                            delivered: tuple[Path, dict[str, Any], str]) -> None:
    out, report, prefix = delivered
    sink = _sink(os_url, prefix)
    expected = _expected(out, prefix)
    assert _ids(sink, prefix) == expected
    summary = orjson.loads((out / "run_summary.json").read_bytes())
    assert report["inventory"]["indexed"] == summary["keys"] == _count(
        sink, index_name("inventory", prefix))
    assert report["alerts"]["indexed"] == summary["alerts_total"]
    assert report["edges"]["indexed"] == summary["edges"] + summary["resource_edges"]
    ev = report["events"]
    assert ev["indexed"] + ev["updated"] == summary["totals"]["events"]
    assert all(report[f]["failed"] == report[f]["dead_lettered"] == 0 for f in FAMILIES)
    assert report["dead_letter_path"] is None


def test_rerun_creates_no_duplicates(os_url: str,
                                     delivered: tuple[Path, dict[str, Any], str]) -> None:
    out, first, prefix = delivered
    sink = _sink(os_url, prefix)
    before = _ids(sink, prefix)
    again = sinks.deliver(str(out), _settings(os_url, prefix))
    after = _ids(sink, prefix)
    assert after == before
    for f in FAMILIES:
        assert again[f]["indexed"] == 0, f
        assert again[f]["updated"] == first[f]["indexed"] + first[f]["updated"], f
    inv_id = next(a.id for a in store_actions(out, prefix) if a.family == "inventory")
    doc = _req(sink, "GET", f"/{index_name('inventory', prefix)}/_doc/{inv_id}")
    assert doc["_version"] >= 2  # replaced in place, same _id


def test_analyst_triage_status_survives_a_rerun(os_url: str,
                                               delivered: tuple[Path, dict[str, Any], str]
                                               ) -> None:
    out, _report, prefix = delivered
    sink = _sink(os_url, prefix)
    alert_id = next(a.id for a in store_actions(out, prefix) if a.family == "alerts")
    idx = index_name("alerts", prefix)
    _req(sink, "POST", f"/{idx}/_update/{alert_id}",
         {"doc": {"keytrail": {"alert": {"status": "acknowledged"}}}},
         params={"refresh": "true"})
    sinks.deliver(str(out), _settings(os_url, prefix))
    doc = _req(sink, "GET", f"/{idx}/_doc/{alert_id}")
    assert doc["_source"]["keytrail"]["alert"]["status"] == "acknowledged"
    _req(sink, "POST", f"/{idx}/_update/{alert_id}",
         {"doc": {"keytrail": {"alert": {"status": "open"}}}}, params={"refresh": "true"})


def test_a_rederived_alert_replaces_its_old_version_whole(os_url: str, tmp_path: Path,
                                                         delivered: tuple[Path, dict[str, Any],
                                                                          str]) -> None:
    """A field the new version no longer has disappears (it stayed with partial updates);
    the analyst's triage status is kept."""
    _out, _report, prefix = delivered
    sink = _sink(os_url, prefix)
    idx = index_name("alerts", prefix)
    aid = "rederived-alert-1"
    old = {"keytrail": {"alert": {"id": aid, "status": "open", "event_count": 3}},
           "user": {"id": "arn:aws:iam::1:user/old"}}
    new = {"keytrail": {"alert": {"id": aid, "status": "open", "event_count": 4}}}
    sink.deliver([Action("alerts", "update", idx, aid, old)], tmp_path / "dlq.ndjson")
    _req(sink, "POST", f"/{idx}/_update/{aid}",
         {"doc": {"keytrail": {"alert": {"status": "acknowledged"}}}}, params={"refresh": "true"})
    report = sink.deliver([Action("alerts", "update", idx, aid, new)], tmp_path / "dlq.ndjson")
    assert report.families["alerts"].dead_lettered == 0
    src = _req(sink, "GET", f"/{idx}/_doc/{aid}")["_source"]
    assert "user" not in src, "a field the re-derived alert lost must not survive"
    assert src["keytrail"]["alert"] == {"id": aid, "status": "acknowledged", "event_count": 4}
    _req(sink, "DELETE", f"/{idx}/_doc/{aid}", params={"refresh": "true"})


def _terms(sink: SearchSink, index: str, field: str, query: dict[str, Any] | None = None,
           size: int = 1000) -> dict[Any, int]:
    body = _req(sink, "POST", f"/{index}/_search", {
        "size": 0, "query": query or {"match_all": {}},
        "aggs": {"t": {"terms": {"field": field, "size": size}}}})
    return {b["key"]: b["doc_count"] for b in body["aggregations"]["t"]["buckets"]}


def test_dashboard_queries_return_the_expected_buckets(
        os_url: str, delivered: tuple[Path, dict[str, Any], str]) -> None:
    out, _report, prefix = delivered
    sink = _sink(os_url, prefix)
    inv = orjson.loads((out / "inventory.json").read_bytes())
    alerts = [orjson.loads(x) for x in (out / "alerts.ndjson").read_bytes().splitlines()]
    summary = orjson.loads((out / "run_summary.json").read_bytes())
    inv_idx, al_idx = index_name("inventory", prefix), index_name("alerts", prefix)

    # Inventory and lifecycle: one bucket per key; states as in the run summary.
    keys = _terms(sink, inv_idx, "keytrail.key.uid", size=10000)
    assert keys == {r["uid"]: 1 for r in inv}
    assert _terms(sink, inv_idx, "keytrail.inventory.state") == summary["keys_by_state"]
    # Rotation compliance (CEK-21).
    overdue = _count(sink, inv_idx, {"range": {
        "keytrail.inventory.rotation.overdue_days": {"gt": 0}}})
    assert overdue == summary["keys_overdue"]
    disabled = _count(sink, inv_idx, {"bool": {"filter": [
        {"term": {"keytrail.inventory.rotation.eligible": True}},
        {"term": {"keytrail.inventory.rotation.enabled": False}}]}})
    assert disabled == sum(1 for r in inv if r["rotation"]["eligible"]
                           and r["rotation"]["enabled"] is False)
    # Alerts triage.
    assert _terms(sink, al_idx, "rule.id") == dict(Counter(a["rule.id"] for a in alerts))
    assert _terms(sink, al_idx, "keytrail.alert.severity") == {
        k: v for k, v in summary["alerts"].items() if v}
    by_key = Counter(a["keytrail.key.uid"] for a in alerts if a.get("keytrail.key.uid"))
    assert _terms(sink, al_idx, "keytrail.key.uid") == dict(by_key)
    # Events over time: a date histogram on @timestamp over all monthly indices.
    rows = {r["event.id"]: r for r in iter_event_rows(out)}
    body = _req(sink, "POST", f"/{prefix}-events-*/_search", {
        "size": 0, "aggs": {"h": {"date_histogram": {
            "field": "@timestamp", "calendar_interval": "month", "min_doc_count": 1}}}})
    months = {b["key_as_string"][:7]: b["doc_count"]
              for b in body["aggregations"]["h"]["buckets"]}
    assert months == dict(Counter(r["@timestamp"][:7] for r in rows.values()))
    datasets = _terms(sink, f"{prefix}-events-*", "event.dataset")
    assert datasets == dict(Counter(r["event.dataset"] for r in rows.values()))
    # Usage graph: top principals per key and cross-account use.
    edges = [a.source for a in store_actions(out, prefix) if a.family == "edges"]
    cross = sum(1 for e in edges if e["keytrail"].get("edge", {}).get("cross_account"))
    assert _count(sink, index_name("edges", prefix), {
        "term": {"keytrail.edge.cross_account": True}}) == cross
    body = _req(sink, "POST", f"/{index_name('edges', prefix)}/_search", {
        "size": 0, "query": {"term": {"keytrail.edge.type": "principal_key"}},
        "aggs": {"k": {"terms": {"field": "keytrail.key.uid", "size": 5}, "aggs": {
            "p": {"terms": {"field": "user.id", "size": 3},
                  "aggs": {"n": {"sum": {"field": "keytrail.edge.count"}}}}}}}})
    for kb in body["aggregations"]["k"]["buckets"]:
        for pb in kb["p"]["buckets"]:
            want = sum(e["keytrail"]["edge"]["count"] for e in edges
                       if e["keytrail"]["key"]["uid"] == kb["key"]
                       and e.get("user", {}).get("id") == pb["key"])
            assert pb["n"]["value"] == want


def _norm(m: Any) -> Any:
    """GET _mapping spells booleans as strings ("false"); the template uses JSON booleans."""
    if isinstance(m, dict):
        return {k: _norm(v) for k, v in m.items()}
    if m in ("true", "false"):
        return m == "true"
    return m


def test_mappings_equal_the_templates_after_indexing(
        os_url: str, delivered: tuple[Path, dict[str, Any], str]) -> None:
    _out, _report, prefix = delivered
    sink = _sink(os_url, prefix)
    mappings = _req(sink, "GET", f"/{prefix}-*/_mapping")
    assert len(mappings) >= 4
    for index, m in mappings.items():
        family = next(f for f in FAMILIES if index.startswith(f"{prefix}-{f}"))
        assert _norm(m["mappings"]) == _norm(family_mapping(family)), index


def test_unknown_fields_follow_the_dynamic_policy(os_url: str, tmp_path: Path,
                                                  delivered: tuple[Path, dict[str, Any], str]
                                                  ) -> None:
    _out, _report, prefix = delivered
    sink = _sink(os_url, prefix, retry=RetryPolicy(max_retries=1, base_seconds=0.01))
    ev_index = f"{prefix}-events-2031.01"
    event = {"@timestamp": "2031-01-02T03:04:05.000Z", "event": {"id": "unknown-1",
             "dataset": "aws.cloudtrail", "brand_new": "x"},
             "aws": {"cloudtrail": {"never_seen_before": {"deep": 1}}}}
    alert = {"keytrail": {"alert": {"id": "unknown-2", "severity": "low",
                                    "not_in_model": True}}}
    dlq = tmp_path / "dlq.ndjson"
    rep = sink.deliver([Action("events", "index", ev_index, "unknown-1", event),
                        Action("alerts", "index", index_name("alerts", prefix), "unknown-2",
                               alert)], dlq)
    # Events (dynamic: false): accepted, kept in _source, not indexed, mapping unchanged.
    assert rep.families["events"].indexed == 1
    got = _req(sink, "GET", f"/{ev_index}/_doc/unknown-1")
    assert got["_source"]["aws"]["cloudtrail"]["never_seen_before"] == {"deep": 1}
    m = _req(sink, "GET", f"/{ev_index}/_mapping")[ev_index]["mappings"]
    assert _norm(m) == _norm(family_mapping("events"))
    # Derived records (dynamic: strict): rejected loudly, dead-lettered with the reason.
    assert rep.families["alerts"].dead_lettered == 1
    (line,) = dlq.read_text().splitlines()
    assert "strict_dynamic_mapping_exception" in json.loads(line)["error"]
    _req(sink, "DELETE", f"/{ev_index}")


def test_read_back_matches_the_local_store(os_url: str,
                                           delivered: tuple[Path, dict[str, Any], str]) -> None:
    out, _report, prefix = delivered
    settings = _settings(os_url, prefix)
    inv = orjson.loads((out / "inventory.json").read_bytes())
    assert sinks.read_inventory(settings) == sorted(inv, key=lambda r: r["uid"])
    local = {a["keytrail.alert.id"]: a for a in (
        orjson.loads(x) for x in (out / "alerts.ndjson").read_bytes().splitlines())}
    remote = {a["keytrail.alert.id"]: a for a in sinks.read_alerts(settings)}
    assert remote == local


# --- failure injection ------------------------------------------------------------------

class Proxy:
    """TCP proxy on 127.0.0.1 in front of the real node; `stop()` closes every connection
    and refuses new ones (the engine 'dies'), `start()` brings it back on the same port."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.split("://", 1)[1].split(":")
        self.upstream = (host, int(port))
        self.port = 0
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", self.port))
        ls.listen(16)
        self.port = ls.getsockname()[1]
        self._listener = ls
        threading.Thread(target=self._accept, args=(ls,), daemon=True).start()

    def stop(self) -> None:
        with self._lock:
            if self._listener is not None:
                # shutdown() wakes the thread blocked in accept(); close() alone does not.
                with contextlib.suppress(OSError):
                    self._listener.shutdown(socket.SHUT_RDWR)
                self._listener.close()
                self._listener = None
            for c in self._conns:
                with contextlib.suppress(OSError):
                    c.shutdown(socket.SHUT_RDWR)
                c.close()
            self._conns.clear()

    def _accept(self, ls: socket.socket) -> None:
        while True:
            try:
                client, _ = ls.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


def test_engine_dies_mid_delivery_then_replay_restores_the_exact_set(
        os_url: str, tmp_path: Path) -> None:
    prefix = "ktfail"
    _setup(os_url, prefix, tmp_path)
    direct = _sink(os_url, prefix)
    _wipe(direct, prefix)
    out = local_store()
    expected = _expected(out, prefix)
    proxy = Proxy(os_url)
    proxy.start()
    try:
        sink = _sink(proxy.url, prefix, batch_docs=50,
                     retry=RetryPolicy(max_retries=2, base_seconds=0.05, max_seconds=0.2))
        real_bulk = sink.bulk
        calls = {"n": 0}

        def bulk_then_die(payload: bytes) -> dict[str, Any]:
            calls["n"] += 1
            if calls["n"] == 4:  # the engine goes away in the middle of the run
                proxy.stop()
            return real_bulk(payload)

        sink.bulk = bulk_then_die  # type: ignore[method-assign]
        dlq = tmp_path / "dead_letter.ndjson"
        report = sink.deliver(store_actions(out, prefix), dlq).as_dict()
        sent = sum(report[f]["indexed"] + report[f]["updated"] + report[f]["failed"]
                   for f in FAMILIES)
        assert sent == sum(1 for _ in store_actions(out, prefix))  # counts add up
        failed = sum(report[f]["failed"] for f in FAMILIES)
        assert failed > 0 and failed == sum(report[f]["dead_lettered"] for f in FAMILIES)
        assert failed == len(dlq.read_text().splitlines())
        landed = sum(report[f]["indexed"] + report[f]["updated"] for f in FAMILIES)
        assert landed >= 150  # three batches went through before the engine died

        partial = _ids(direct, prefix)
        assert partial < expected

        proxy.start()  # the engine is back, same address
        rc, msg = _cli(["replay", str(dlq), "--sink", "opensearch", "--sink-url", proxy.url,
                        "--index-prefix", prefix])
        assert rc == 0, msg
        assert not dlq.exists()
        assert _ids(direct, prefix) == expected
    finally:
        proxy.stop()


def test_node_stopped_mid_run_then_restarted_and_replayed(opensearch: Any,
                                                          tmp_path: Path) -> None:
    """The real engine process is stopped in the middle of delivery: the run still finishes,
    every document indexed or dead-lettered; after a restart, replay completes the set."""
    url = opensearch.url
    prefix = "ktstop"
    _setup(url, prefix, tmp_path)
    _wipe(_sink(url, prefix), prefix)
    out = local_store()
    expected = _expected(out, prefix)
    sink = _sink(url, prefix, batch_docs=50,
                 retry=RetryPolicy(max_retries=2, base_seconds=0.05, max_seconds=0.2))
    real_bulk = sink.bulk
    calls = {"n": 0}

    def bulk_then_stop(payload: bytes) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] == 3:
            opensearch.stop()  # the real node process goes away
        return real_bulk(payload)

    sink.bulk = bulk_then_stop  # type: ignore[method-assign]
    dlq = tmp_path / "dead_letter.ndjson"
    report = sink.deliver(store_actions(out, prefix), dlq).as_dict()
    total = sum(1 for _ in store_actions(out, prefix))
    landed = sum(report[f]["indexed"] + report[f]["updated"] for f in FAMILIES)
    failed = sum(report[f]["failed"] for f in FAMILIES)
    assert landed + failed == total and failed > 0
    assert failed == len(dlq.read_text().splitlines())

    opensearch.start()  # same data directory and port
    direct = _sink(url, prefix)
    assert _ids(direct, prefix) < expected
    replayed = sinks.replay(dlq, direct)
    assert sum(replayed[f]["failed"] for f in FAMILIES) == 0
    assert not dlq.exists()
    assert _ids(direct, prefix) == expected


def test_run_with_dead_letters_exits_3_with_one_summary_line(
        os_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`keytrail run` whose engine dies mid-delivery: exit code 3 (not 0), one line naming
    the count and the replay command, one line for the retry episode, no traceback."""
    from pipelines import cli
    from tests.golden_util import SAMPLES

    prefix = "ktexit"
    _setup(os_url, prefix, tmp_path)
    proxy = Proxy(os_url)
    proxy.start()
    real_init = SearchSink.__init__
    real_bulk_calls = {"n": 0}

    def fast_retries(self: SearchSink, *a: Any, **kw: Any) -> None:
        real_init(self, *a, **kw)
        self.retry = RetryPolicy(max_retries=2, base_seconds=0.01, max_seconds=0.05)
        self.batch_docs = 100
        real_bulk = self.bulk

        def bulk_then_die(payload: bytes) -> dict[str, Any]:
            real_bulk_calls["n"] += 1
            if real_bulk_calls["n"] == 3:
                proxy.stop()  # failure injection: the engine goes away mid-run
            return real_bulk(payload)

        self.bulk = bulk_then_die  # type: ignore[method-assign]

    monkeypatch.setattr(SearchSink, "__init__", fast_retries)
    try:
        rc = cli.main(["run", str(SAMPLES), "--out", str(tmp_path / "out"), "-q", "--sink",
                       "opensearch", "--sink-url", proxy.url, "--index-prefix", prefix])
    finally:
        proxy.stop()
    err = capsys.readouterr().err
    assert rc == cli.EXIT_DEAD_LETTERED == 3
    assert "Traceback" not in err
    lines = [x for x in err.splitlines() if x.strip()]
    summary = [x for x in lines if "documents were not delivered" in x]
    assert len(summary) == 1, err
    assert f"keytrail replay {tmp_path / 'out' / 'dead_letter.ndjson'} --sink opensearch" \
        in summary[0]
    assert len(lines) <= 3, err  # the summary and one line per retry episode
