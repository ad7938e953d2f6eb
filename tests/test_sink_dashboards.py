"""Saved objects: every ndjson file is valid for import, every field a visualization or
saved search references exists in the templates (and is aggregatable where aggregated),
and `keytrail dashboards install` sends what the saved-objects _import API expects.

Kibana and OpenSearch Dashboards cannot run here (neither ships through a package
registry this project can use), so the install test answers from an in-process recorder
and checks the exact requests."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import pytest

from dashboards.fields import FAMILIES, index_pattern, is_aggregatable, mapped_fields
from dashboards.saved_objects import DASHBOARDS
from pipelines.sinks.dashboards_install import install_saved_objects
from tests.recording_server import Recorded, RecordingServer

ROOT = Path(__file__).resolve().parents[1] / "dashboards"
FILES = sorted((ROOT / "kibana").glob("*.ndjson")) + sorted(
    (ROOT / "opensearch").glob("*.ndjson"))
FAMILY_BY_TITLE = {index_pattern(f): f for f in FAMILIES}
KQL_FIELD = re.compile(r"(?:^|\(|\band\b|\bor\b|\bnot\b)\s*([@A-Za-z_][\w.@]*)\s*(?::|<=?|>=?)")


def _objects(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_one_file_per_dashboard_for_both_products() -> None:
    names = {p.name for p in (ROOT / "kibana").glob("*.ndjson")}
    assert names == {p.name for p in (ROOT / "opensearch").glob("*.ndjson")}
    assert len(names) == len(DASHBOARDS) == 7


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_ndjson_is_valid_for_import(path: Path) -> None:
    objs = _objects(path)
    ids = {(o["type"], o["id"]) for o in objs}
    assert len(ids) == len(objs), "duplicate saved object"
    for o in objs:
        assert set(o) >= {"type", "id", "attributes", "references"}, o.get("id")
        assert o["type"] in {"index-pattern", "visualization", "search", "dashboard"}
        assert o["attributes"].get("title")
        for ref in o["references"]:
            assert (ref["type"], ref["id"]) in ids, f"{o['id']}: unresolved {ref}"
        meta = o["attributes"].get("kibanaSavedObjectMeta")
        if meta:
            src = json.loads(meta["searchSourceJSON"])
            if "indexRefName" in src:
                assert src["indexRefName"] in {r["name"] for r in o["references"]}
        if o["type"] == "visualization":
            vis = json.loads(o["attributes"]["visState"])
            assert vis["type"] in {"pie", "table", "metric", "histogram", "line"}
            assert vis["aggs"] and vis["aggs"][0]["schema"] == "metric"
        if o["type"] == "dashboard":
            panels = json.loads(o["attributes"]["panelsJSON"])
            assert {p["panelRefName"] for p in panels} == {r["name"] for r in o["references"]}
    assert sum(o["type"] == "dashboard" for o in objs) == 1


def _family_of(obj: dict[str, Any], by_id: dict[str, dict[str, Any]]) -> str:
    ref = next(r for r in obj["references"] if r["type"] == "index-pattern")
    return FAMILY_BY_TITLE[by_id[ref["id"]]["attributes"]["title"]]


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_referenced_field_exists_in_the_templates(path: Path) -> None:
    objs = _objects(path)
    by_id = {o["id"]: o for o in objs}
    checked = 0
    for o in objs:
        if o["type"] not in ("visualization", "search"):
            continue
        family = _family_of(o, by_id)
        fields = mapped_fields(family)
        src = json.loads(o["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
        for name in KQL_FIELD.findall(src["query"]["query"]):
            assert name in fields, f"{o['id']}: query field {name} not in {family} template"
            checked += 1
        if o["type"] == "search":
            for col in o["attributes"]["columns"]:
                assert col in fields, f"{o['id']}: column {col} not in {family} template"
                checked += 1
            for fld, _dir in o["attributes"]["sort"]:
                assert is_aggregatable(fields[fld]), f"{o['id']}: cannot sort on {fld}"
            continue
        for agg in json.loads(o["attributes"]["visState"])["aggs"]:
            fld = agg["params"].get("field")
            if fld is None:
                continue
            assert fld in fields, f"{o['id']}: {agg['type']} on {fld} not in {family} template"
            assert is_aggregatable(fields[fld]), f"{o['id']}: {fld} is not aggregatable"
            checked += 1
    assert checked > 0


def test_field_check_catches_a_missing_field() -> None:
    """The check above can fail: a made-up field is not in any template."""
    assert "keytrail.inventory.no_such_field" not in mapped_fields("inventory")
    assert KQL_FIELD.findall("a.b : x and not c.d > 3") == ["a.b", "c.d"]


def _ok(rec: Recorded) -> tuple[int, dict[str, str], Any]:
    return 200, {"content-type": "application/json"}, {"success": True, "successCount": 3}


@pytest.mark.parametrize("osd", [False, True])
def test_install_posts_each_file_to_the_import_api(osd: bool, monkeypatch: pytest.MonkeyPatch
                                                   ) -> None:
    monkeypatch.setenv("KEYTRAIL_SINK_PASSWORD", "pw-xyz")
    with RecordingServer(_ok) as srv:
        args = argparse.Namespace(kibana_url=srv.url, opensearch_dashboards=osd, space=None,
                                  sink=None, sink_url=None, ca_certs=None, insecure=None,
                                  sink_user="kibana_admin", credentials_file=None,
                                  index_prefix="acme", dead_letter=None)
        lines = install_saved_objects(args)
    assert len(lines) == len(srv.requests) == 7
    for r in srv.requests:
        assert r.method == "POST"
        assert r.path == "/api/saved_objects/_import?overwrite=true"
        assert r.headers.get("osd-xsrf" if osd else "kbn-xsrf") == "true"
        assert ("kbn-xsrf" in r.headers) is not osd
        assert r.headers["authorization"].startswith("Basic ")
        assert r.headers["content-type"].startswith("multipart/form-data; boundary=")
        assert b'name="file"; filename="' in r.body
        # Data views follow the index prefix.
        assert b'"title":"acme-' in r.body and b'"title":"keytrail-' not in r.body


def test_install_reports_rejections_in_one_line() -> None:
    def bad(rec: Recorded) -> tuple[int, dict[str, str], Any]:
        return 200, {}, {"success": False, "errors": [{"id": "x", "error": {"type": "conflict"}}]}

    from parsers.base import KeytrailError

    with RecordingServer(bad) as srv:
        args = argparse.Namespace(kibana_url=srv.url, opensearch_dashboards=False, space="soc",
                                  sink=None, sink_url=None, ca_certs=None, insecure=None,
                                  sink_user=None, credentials_file=None, index_prefix=None,
                                  dead_letter=None)
        with pytest.raises(KeytrailError, match=r"Kibana rejected .*conflict"):
            install_saved_objects(args)
    assert srv.requests[0].path == "/s/soc/api/saved_objects/_import?overwrite=true"
