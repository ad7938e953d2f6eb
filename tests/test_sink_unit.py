"""Sink layer without an engine: generated artifacts, document shapes, backoff and dead
letters (failure injection through a scripted in-memory engine), settings and the CLI."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from dashboards.fields import FAMILIES, family_mapping, mapped_fields
from dashboards.generate import generate
from parsers.base import KeytrailError
from pipelines import sinks
from pipelines.sinks.documents import (
    Action,
    alert_doc,
    alert_record,
    events_index,
    inventory_doc,
    inventory_record,
    store_actions,
)
from pipelines.sinks.engine import (
    EngineError,
    EngineResponse,
    RetriableError,
    RetryPolicy,
    SearchSink,
)
from pipelines.sinks.settings import resolve
from tests.sink_helpers import local_store


def test_generated_artifacts_are_up_to_date() -> None:
    """CI check: regenerating templates, saved objects and docs/fields.md gives no diff."""
    assert generate(check=True) == [], "run 'python -m dashboards.generate' and commit"


def _leaves(doc: Any, path: str = "") -> list[str]:
    out: list[str] = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _leaves(v, f"{path}{k}" if not path else f"{path}.{k}")
    elif isinstance(doc, list) and not doc:
        pass  # an empty array adds no field
    elif isinstance(doc, list) and all(isinstance(e, dict) for e in doc):
        for e in doc:
            out += _leaves(e, path)
    else:
        out.append(path)
    return out


STORED_ONLY = ("keytrail.alert.details",)


@pytest.mark.parametrize("family", [f for f in FAMILIES if f != "events"])
def test_every_derived_document_field_is_mapped(family: str) -> None:
    """inventory / edges / alerts are `dynamic: strict`: a field missing from the template
    would get every such document rejected, so check real run output against it."""
    out = local_store()
    fields = mapped_fields(family)
    open_prefixes = ("keytrail.inventory.usage_counts.", "keytrail.inventory.last_used.")
    seen = 0
    for a in store_actions(out, "keytrail"):
        if a.family != family:
            continue
        seen += 1
        for leaf in _leaves(a.source):
            if leaf.startswith(STORED_ONLY) or leaf.startswith(open_prefixes):
                continue
            assert leaf in fields, f"{family}: {leaf} is not in the {family} template"
    assert seen > 0


def test_event_mapping_is_dynamic_false_with_vendor_namespaces_closed() -> None:
    m = family_mapping("events")
    assert m["dynamic"] is False
    assert m["properties"]["hashicorp_vault"]["dynamic"] is False
    assert m["properties"]["aws"]["properties"]["cloudtrail"]["dynamic"] is False
    assert family_mapping("alerts")["dynamic"] == "strict"
    assert mapped_fields("events")["source.ip"] == {"type": "ip"}
    assert mapped_fields("events")["@timestamp"] == {"type": "date"}


def test_inventory_and_alert_round_trip_through_documents() -> None:
    out = local_store()
    inv = orjson.loads((out / "inventory.json").read_bytes())
    for rec in inv:
        assert inventory_record(inventory_doc(rec)) == rec
    for line in (out / "alerts.ndjson").read_bytes().splitlines():
        a = orjson.loads(line)
        back = alert_record(alert_doc(a))
        assert back == a


def test_event_documents_are_nested_and_land_in_monthly_indices() -> None:
    out = local_store()
    ev = next(a for a in store_actions(out, "kt") if a.family == "events")
    assert ev.index == events_index("kt", ev.source["@timestamp"])
    assert ev.index.startswith("kt-events-") and len(ev.index) == len("kt-events-2024.01")
    assert ev.id == ev.source["event"]["id"]
    assert "event.id" not in ev.source


def test_alert_update_keeps_analyst_status() -> None:
    a = Action("alerts", "update", "keytrail-alerts", "x",
               {"keytrail": {"alert": {"status": "open", "severity": "high"}}})
    body = a.body()
    assert body["doc"] == {"keytrail": {"alert": {"severity": "high"}}}
    assert body["upsert"]["keytrail"]["alert"]["status"] == "open"
    stored = {"keytrail": {"alert": {"status": "acknowledged", "severity": "low"}},
              "user": {"id": "gone"}}
    whole = a.whole(stored)
    assert whole.op == "index"
    assert whole.source == {"keytrail": {"alert": {"status": "acknowledged",
                                                   "severity": "high"}}}
    assert a.whole(None).source == a.source
    assert Action.from_dict(orjson.loads(orjson.dumps(a.to_dict()))) == a


# --- backoff and dead letters with a scripted engine -----------------------------------

class ScriptedSink(SearchSink):
    """In-memory engine for failure injection: `script` is consumed one bulk call at a time:
    'down' -> connection refused, 429/503 -> whole request refused, 'item429' -> the first
    item answers 429, 'ok' -> everything applied."""

    engine = "scripted"

    def __init__(self, script: list[Any], **kw: Any) -> None:
        self.sleeps: list[float] = []
        super().__init__("http://scripted", retry=RetryPolicy(max_retries=3, base_seconds=0.1),
                         sleep=self.sleeps.append, **kw)
        self.script = list(script)
        self.docs: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls = 0

    def request(self, method: str, path: str, body: Any = None,
                params: dict[str, str] | None = None) -> EngineResponse:
        return EngineResponse(200, {"version": {"number": "0"}})

    def bulk(self, payload: bytes) -> dict[str, Any]:
        self.calls += 1
        step = self.script.pop(0) if self.script else "ok"
        if step == "down":
            raise RetriableError("ConnectionError: refused")
        if step in (429, 503):
            raise RetriableError(f"HTTP {step}", step)
        if step == 400:
            raise EngineError("request too large", 413)
        lines = payload.splitlines()
        items = []
        for i in range(0, len(lines), 2):
            (op, meta), = orjson.loads(lines[i]).items()
            body = orjson.loads(lines[i + 1])
            key = (meta["_index"], meta["_id"])
            if step == "item429" and i == 0:
                items.append({op: {"status": 429, "error": {"type": "es_rejected_execution"}}})
                continue
            src = body.get("upsert", body) if op == "update" else body
            if "bad" in src:
                items.append({op: {"status": 400, "error": {
                    "type": "strict_dynamic_mapping_exception", "reason": "bad not allowed"}}})
                continue
            existed = key in self.docs
            self.docs[key] = src
            items.append({op: {"status": 200 if existed else 201,
                               "result": "updated" if existed else "created"}})
        return {"errors": False, "items": items}


def _actions(n: int, family: str = "edges") -> list[Action]:
    return [Action(family, "index", "keytrail-edges", f"id{i}", {"n": i}) for i in range(n)]


def test_retries_with_exponential_backoff_then_succeeds(tmp_path: Path) -> None:
    sink = ScriptedSink(["down", 503, 429])
    rep = sink.deliver(_actions(5), tmp_path / "dlq.ndjson")
    c = rep.families["edges"]
    assert (c.indexed, c.updated, c.failed, c.dead_lettered) == (5, 0, 0, 0)
    assert len(sink.sleeps) == 3
    # Jittered between 50% and 100% of base * 2^attempt.
    for attempt, s in enumerate(sink.sleeps):
        assert 0.1 * 2 ** attempt * 0.5 <= s <= 0.1 * 2 ** attempt
    assert not (tmp_path / "dlq.ndjson").exists()


def test_item_level_429_is_retried_alone(tmp_path: Path) -> None:
    sink = ScriptedSink(["item429"])
    rep = sink.deliver(_actions(3), tmp_path / "dlq.ndjson")
    c = rep.families["edges"]
    assert c.indexed == 3 and c.retried == 1 and c.failed == 0
    assert sink.calls == 2


def test_exhausted_retries_and_rejections_go_to_the_dead_letter_file(tmp_path: Path) -> None:
    acts = [*_actions(2), Action("edges", "index", "keytrail-edges", "bad1", {"bad": 1})]
    sink = ScriptedSink(["down"] * 4, batch_docs=10)
    dlq = tmp_path / "dlq.ndjson"
    rep = sink.deliver(acts, dlq)
    c = rep.families["edges"]
    assert (c.indexed, c.failed, c.dead_lettered) == (0, 3, 3)
    lines = [json.loads(x) for x in dlq.read_text().splitlines()]
    assert [x["action"]["index"]["_id"] for x in lines] == ["id0", "id1", "bad1"]
    assert all("refused" in x["error"] and x["attempts"] == 4 for x in lines)
    assert lines[2]["doc"] == {"bad": 1} and lines[2]["family"] == "edges"
    assert rep.dead_letter_path == str(dlq)

    # The engine is back: replay sends what it can; the mapping rejection stays a dead
    # letter (it would fail forever), the file keeps exactly that one line.
    healthy = ScriptedSink([])
    out = sinks.replay(dlq, healthy)
    assert out["edges"]["indexed"] == 2 and out["edges"]["dead_lettered"] == 1
    assert {k[1] for k in healthy.docs} == {"id0", "id1"}
    left = [json.loads(x) for x in dlq.read_text().splitlines()]
    assert [x["action"]["index"]["_id"] for x in left] == ["bad1"]
    assert "strict_dynamic_mapping_exception" in left[0]["error"]
    # Replaying again is idempotent: same _id -> updated, never a duplicate.
    healthy.docs.pop(("keytrail-edges", "bad1"), None)
    again = sinks.replay(dlq, healthy)
    assert again["edges"]["dead_lettered"] == 1 and len(healthy.docs) == 2


def test_engine_down_mid_delivery_dead_letters_the_rest_quickly(tmp_path: Path) -> None:
    """After one batch exhausts its retries the sink stops backing off per batch: every
    later batch gets a single attempt, so a dead engine cannot stall a run for hours."""
    sink = ScriptedSink(["ok"] + ["down"] * 100, batch_docs=10)
    rep = sink.deliver(_actions(100), tmp_path / "dlq.ndjson")
    c = rep.families["edges"]
    assert c.indexed == 10 and c.failed == 90 and c.dead_lettered == 90
    assert c.indexed + c.updated + c.failed == 100
    assert sink.calls == 1 + 4 + 8  # first ok, one batch with 3 retries, then 1 try each
    assert len(sink.sleeps) == 3


def test_whole_request_rejection_dead_letters_the_batch(tmp_path: Path) -> None:
    sink = ScriptedSink([400])
    rep = sink.deliver(_actions(4), tmp_path / "dlq.ndjson")
    assert rep.families["edges"].dead_lettered == 4
    assert sink.sleeps == []


def test_replay_of_a_bad_file_is_one_clear_line(tmp_path: Path) -> None:
    p = tmp_path / "x.ndjson"
    p.write_text("{not json\n")
    with pytest.raises(KeytrailError, match="not a keytrail dead-letter record"):
        sinks.replay(p, ScriptedSink([]))
    with pytest.raises(KeytrailError, match="not found"):
        sinks.replay(tmp_path / "missing.ndjson", ScriptedSink([]))


# --- settings, credentials and CLI -------------------------------------------------------

def _ns(**kw: Any) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    sinks.sink_options(p)
    args = p.parse_args([])
    for k, v in kw.items():
        setattr(args, k, v)
    return args


def test_settings_defaults_and_credentials(monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                           ) -> None:
    assert resolve(_ns()).kind == "local"
    assert sinks.deliver(str(tmp_path), _ns()) == {}
    with pytest.raises(KeytrailError, match="needs --sink-url"):
        resolve(_ns(sink="opensearch"))
    monkeypatch.setenv("KEYTRAIL_SINK_PASSWORD", "s3cret-pw")
    s = resolve(_ns(sink="opensearch", sink_url="https://h:9200/", sink_user="kt"))
    assert (s.url, s.user, s.password, s.insecure, s.prefix) == (
        "https://h:9200", "kt", "s3cret-pw", False, "keytrail")
    assert "s3cret-pw" not in repr(s)
    monkeypatch.delenv("KEYTRAIL_SINK_PASSWORD")
    creds = tmp_path / "creds.yaml"
    creds.write_text("api_key: abc123\n")
    creds.chmod(0o600)
    s = resolve(_ns(sink="elasticsearch", sink_url="https://h", credentials_file=str(creds)))
    assert s.api_key == "abc123"
    resolve(_ns(sink="elasticsearch", sink_url="https://h", insecure=True))
    assert "verification is OFF" in capsys.readouterr().err
    with pytest.raises(KeytrailError, match="do not put credentials in the config"):
        resolve({"type": "opensearch", "url": "https://h", "password": "x"})
    with pytest.raises(KeytrailError, match="needs a password"):
        resolve(_ns(sink="opensearch", sink_url="https://h", sink_user="kt"))


def _cli(argv: list[str]) -> tuple[int, str]:
    """Run a sink subcommand the way pipelines/cli.py does (one line on KeytrailError)."""
    ap = argparse.ArgumentParser(prog="keytrail")
    sub = ap.add_subparsers(dest="command", required=True)
    handlers: dict[str, Any] = {}
    sinks.add_cli(sub, handlers)
    args = ap.parse_args(argv)
    try:
        return handlers[args.command](args, []), ""
    except KeytrailError as exc:
        return 2, str(exc)


def test_unreachable_sink_is_one_clear_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    rc, msg = _cli(["setup", "--sink", "opensearch", "--sink-url", url])
    assert rc == 2 and "\n" not in msg
    assert msg.startswith(f"cannot reach OpenSearch at {url}") and "--sink-url" in msg
    out = local_store()
    with pytest.raises(KeytrailError, match="cannot reach Elasticsearch"):
        sinks.deliver(str(out), _ns(sink="elasticsearch", sink_url=url))
    rc, msg = _cli(["replay", str(tmp_path / "x"), "--sink", "opensearch", "--sink-url", url])
    assert rc == 2 and "cannot reach" in msg


def test_events_are_sent_before_the_records_that_cite_them() -> None:
    families = [a.family for a in store_actions(local_store(), "kt")]
    last_event = max(i for i, f in enumerate(families) if f == "events")
    first_other = min(i for i, f in enumerate(families) if f != "events")
    assert last_event < first_other, "an alert or inventory record went before its evidence"
