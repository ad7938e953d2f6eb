"""The HTML audit report: sections, escaping of log content, determinism, empty and large input.

`sample_run()` builds realistic derived records through the real detectors code (inventory
state machine, edges, alerts) so the report is tested on the shapes the pipeline produces;
the browser test and the export tests reuse it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from itertools import count
from typing import Any

import pytest

from dashboards import report
from dashboards.report import render_report
from detectors.base import DetectorMeta, Evidence, Finding, make_alert
from detectors.graph import EdgeAccumulator, ResourceAccumulator, edge_record, resource_record
from detectors.inventory import KeyAccumulator, build_inventory_record
from parsers.schema import KeyEvent

AS_OF = "2025-06-01T00:00:00.000Z"
ACCT = "111122223333"
PARTNER = "444455556666"
ADMIN = f"arn:aws:iam::{ACCT}:role/KeyAdmin"
APP = f"arn:aws:iam::{ACCT}:role/payments-api"
ETL = f"arn:aws:iam::{PARTNER}:role/partner-etl"
XSS = '<script>alert("pwned")</script>'


def kms(key_id: str) -> str:
    return f"arn:aws:kms:us-east-1:{ACCT}:key/{key_id}"


AZ_KEY = "https://contoso-prod.vault.azure.net/keys/sql-tde"
VAULT_KEY = "vault://default/transit/keys/orders"
HSM_KEY = "cloudhsm://cluster-7xq2/262150"
LUNA_KEY = "luna://1234567/par-prod/legacy-wrap"

_offsets = count(0, 731)


def ev(ts: str, uid: str, action: str, op: str, user: str | None = ADMIN,
       cls: str = "lifecycle", outcome: str = "success", path: str | None = None,
       **kw: Any) -> KeyEvent:
    provider = ("aws_kms" if uid.startswith("arn:") else "azure_keyvault" if uid.startswith(
        "https:") else "vault_transit" if uid.startswith("vault:") else "cloudhsm"
        if uid.startswith("cloudhsm:") else "luna")
    dataset = {"aws_kms": "aws.cloudtrail", "azure_keyvault": "azure.keyvault",
               "vault_transit": "hashicorp_vault.audit", "cloudhsm": "hsm.cloudhsm",
               "luna": "hsm.luna"}[provider]
    offset = next(_offsets)
    return KeyEvent(
        timestamp=ts, event_id=f"ev-{provider}-{offset:08d}", dataset=dataset,
        provider=provider, action=action, outcome=outcome,  # type: ignore[arg-type]
        operation=op, operation_class=cls,
        log_file_path=path or f"sample_logs/{dataset}/{ts[:4]}.json.gz", log_offset=offset,
        key_uid=uid, key_provider=provider, user_id=user, **kw)


def key_events() -> dict[str, list[KeyEvent]]:
    global _offsets  # noqa: PLW0603 - each sample starts at offset 0: determinism tests
    _offsets = count(0, 731)
    sym = {"key_spec": "SYMMETRIC_DEFAULT", "key_usage": "ENCRYPT_DECRYPT",
           "key_account": ACCT, "key_region": "us-east-1"}
    return {
        kms("1111aaaa-0000-4000-8000-000000000001"): [
            ev("2022-01-10T09:00:00.000Z", kms("1111aaaa-0000-4000-8000-000000000001"),
               "CreateKey", "create", key_alias="alias/prod-payments", key_origin="AWS_KMS", **sym),
            ev("2022-01-10T09:05:00.000Z", kms("1111aaaa-0000-4000-8000-000000000001"),
               "EnableKeyRotation", "update_policy", cls="policy", key_rotation_period_days=365),
            ev("2024-09-01T00:00:00.000Z", kms("1111aaaa-0000-4000-8000-000000000001"),
               "RotateKey", "rotate", user="kms.amazonaws.com"),
            ev("2025-05-30T12:00:00.000Z", kms("1111aaaa-0000-4000-8000-000000000001"),
               "Decrypt", "decrypt", user=APP, cls="crypto"),
        ],
        kms("2222bbbb-0000-4000-8000-000000000002"): [
            ev("2021-02-01T10:00:00.000Z", kms("2222bbbb-0000-4000-8000-000000000002"),
               "CreateKey", "create", key_alias="alias/legacy-backups", key_origin="AWS_KMS",
               **sym),
            ev("2021-02-02T10:00:00.000Z", kms("2222bbbb-0000-4000-8000-000000000002"),
               "DisableKeyRotation", "update_policy", cls="policy"),
            ev("2025-05-20T03:00:00.000Z", kms("2222bbbb-0000-4000-8000-000000000002"),
               "Decrypt", "decrypt", user=ETL, cls="crypto"),
        ],
        kms("3333cccc-0000-4000-8000-000000000003"): [
            ev("2023-06-01T08:00:00.000Z", kms("3333cccc-0000-4000-8000-000000000003"),
               "CreateKey", "create", key_alias="alias/code-signing", key_spec="RSA_4096",
               key_usage="SIGN_VERIFY", key_origin="AWS_KMS", key_account=ACCT),
            ev("2025-04-01T08:00:00.000Z", kms("3333cccc-0000-4000-8000-000000000003"),
               "Sign", "sign", user=APP, cls="crypto"),
        ],
        kms("4444dddd-0000-4000-8000-000000000004"): [
            ev("2024-01-05T08:00:00.000Z", kms("4444dddd-0000-4000-8000-000000000004"),
               "CreateKey", "create", key_alias="alias/byok-ledger", key_origin="EXTERNAL",
               **sym),
            ev("2024-01-05T08:30:00.000Z", kms("4444dddd-0000-4000-8000-000000000004"),
               "ImportKeyMaterial", "import"),
        ],
        kms("5555eeee-0000-4000-8000-000000000005"): [
            ev("2020-03-01T08:00:00.000Z", kms("5555eeee-0000-4000-8000-000000000005"),
               "CreateKey", "create", key_alias="alias/old-reporting", key_origin="AWS_KMS",
               **sym),
            ev("2025-05-01T08:00:00.000Z", kms("5555eeee-0000-4000-8000-000000000005"),
               "DisableKey", "disable"),
            ev("2025-05-02T08:00:00.000Z", kms("5555eeee-0000-4000-8000-000000000005"),
               "ScheduleKeyDeletion", "schedule_deletion",
               key_deletion_date="2025-06-01T08:00:00.000Z"),
        ],
        AZ_KEY: [
            ev("2024-09-01T11:00:00.000Z", AZ_KEY, "KeyCreate", "create",
               user="5f1c2d3e-aaaa-bbbb-cccc-000000000001", key_name="sql-tde",
               key_vault="contoso-prod", key_spec="RSA-HSM",
               key_expires_at="2026-09-01T00:00:00.000Z"),
            ev("2025-05-31T23:00:00.000Z", AZ_KEY, "KeyUnwrap", "unwrap", cls="crypto",
               user="9e8d7c6b-0000-0000-0000-00000000sql1", outcome="failure"),
        ],
        VAULT_KEY: [
            ev("2023-01-01T00:00:00.000Z", VAULT_KEY, "update", "create",
               user="entity-0b1c-orders-svc", key_name="orders", key_vault="transit",
               key_spec="aes256-gcm96"),
            ev("2023-12-20T00:00:00.000Z", VAULT_KEY, "update", "rotate",
               user="entity-0b1c-orders-svc"),
            ev("2024-12-18T00:00:00.000Z", VAULT_KEY, "update", "rotate",
               user="entity-0b1c-orders-svc"),
        ],
        HSM_KEY: [
            ev("2025-02-02T02:02:02.000Z", HSM_KEY, "Decrypt", "decrypt", cls="crypto",
               user="crypto_user:app1", key_vault="cluster-7xq2"),
        ],
        LUNA_KEY: [
            ev("2019-05-05T05:05:05.000Z", LUNA_KEY, "CKM_GENERATE_KEY", "create",
               user="co:partition-officer", key_name="legacy-wrap", key_spec="AES-256"),
            ev("2025-01-15T09:00:00.000Z", LUNA_KEY, "C_DestroyObject", "destroy",
               user="co:partition-officer"),
        ],
    }


def sample_inventory(events: dict[str, list[KeyEvent]] | None = None,
                     compromised: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    out = []
    for uid, evs in sorted((events or key_events()).items()):
        acc = KeyAccumulator(uid)
        for e in evs:
            acc.add(e)
        out.append(build_inventory_record(acc, AS_OF, compromised=compromised))
    return out


def _edge(principal: str, key: str, op: str, n: int, failures: int = 0,
          paccount: str | None = ACCT, name: str | None = None,
          ips: tuple[str, ...] = ("10.0.1.5",)) -> dict[str, Any]:
    acc = EdgeAccumulator(count=n, failures=failures, first_seen="2025-05-01T00:00:00.000Z",
                          last_seen="2025-05-31T10:00:00.000Z", source_ips=set(ips),
                          user_name=name, principal_account=paccount,
                          key_account=ACCT if key.startswith("arn:") else None,
                          dataset="aws.cloudtrail")
    return edge_record((principal, key, op, "2025-05-01T00:00:00.000Z"), acc, "1d")


def sample_edges() -> list[dict[str, Any]]:
    k1 = kms("1111aaaa-0000-4000-8000-000000000001")
    k2 = kms("2222bbbb-0000-4000-8000-000000000002")
    k3 = kms("3333cccc-0000-4000-8000-000000000003")
    return [
        _edge(APP, k1, "decrypt", 1_250_000, name="payments-api"),
        _edge(APP, k1, "generate_data_key", 84_000, name="payments-api"),
        _edge(APP, k3, "sign", 3_200, name="payments-api"),
        _edge(ETL, k2, "decrypt", 4_100, paccount=PARTNER, name="partner-etl",
              ips=("203.0.113.7",)),
        _edge("9e8d7c6b-0000-0000-0000-00000000sql1", AZ_KEY, "unwrap", 12, failures=12,
              paccount=None),
        _edge("entity-0b1c-orders-svc", VAULT_KEY, "encrypt", 55_000, paccount=None,
              name="orders-svc"),
        _edge("crypto_user:app1", HSM_KEY, "decrypt", 700, paccount=None),
        _edge(ADMIN, k1, "describe", 40, name="KeyAdmin"),
    ]


def sample_resource_edges() -> list[dict[str, Any]]:
    k1 = kms("1111aaaa-0000-4000-8000-000000000001")
    out = []
    for i, (key, res, n) in enumerate([
        (k1, "arn:aws:s3:::payments-archive/2025/05/batch-0001.parquet", 310),
        (k1, "arn:aws:s3:::payments-archive/2025/05/batch-0002.parquet", 120),
        (kms("2222bbbb-0000-4000-8000-000000000002"), "arn:aws:ec2:us-east-1:111122223333:"
         "volume/vol-0abc1234", 4100),
    ]):
        acc = ResourceAccumulator(count=n, first_seen=f"2025-05-0{i + 1}T00:00:00.000Z",
                                  last_seen="2025-05-31T00:00:00.000Z")
        out.append(resource_record(key, res, acc))
    return out


def _meta(rule: str, title: str, severity: str, risk: int, technique: str,
          tname: str) -> DetectorMeta:
    return DetectorMeta(id=rule, title=title, description=title, severity=severity,
                        risk_score=risk, techniques=[{"id": technique, "name": tname}])


def sample_alerts() -> list[dict[str, Any]]:
    k2 = kms("2222bbbb-0000-4000-8000-000000000002")
    k5 = kms("5555eeee-0000-4000-8000-000000000005")
    return [
        make_alert(_meta("kms_cross_account_decrypt", "Cross-account use of a KMS key",
                         "high", 73, "T1530", "Data from Cloud Storage"),
                   Finding(entity=f"{ETL}|{k2}", first_seen="2025-05-20T03:00:00.000Z",
                           last_seen="2025-05-31T10:00:00.000Z", event_count=4100,
                           key_uid=k2, principal=ETL,
                           explanation="partner-etl in account 444455556666 decrypted with a key "
                           "owned by 111122223333 for the first time.",
                           evidence=[Evidence("ev-aws-1", "2025-05-20T03:00:00.000Z",
                                              "sample_logs/aws.cloudtrail/2025.json.gz", 1462)])),
        make_alert(_meta("key_scheduled_for_deletion", "KMS key scheduled for deletion",
                         "critical", 91, "T1485", "Data Destruction"),
                   Finding(entity=k5, first_seen="2025-05-02T08:00:00.000Z",
                           last_seen="2025-05-02T08:00:00.000Z", key_uid=k5, principal=ADMIN,
                           explanation="A key used in the last 30 days was scheduled for "
                           "deletion; data encrypted under it becomes unrecoverable.",
                           evidence=[Evidence("ev-aws-2", "2025-05-02T08:00:00.000Z",
                                              "sample_logs/aws.cloudtrail/2025.json.gz", 2924)])),
        make_alert(_meta("keyvault_unwrap_failures", "Repeated Key Vault unwrap failures",
                         "medium", 47, "T1110", "Brute Force"),
                   Finding(entity=AZ_KEY, first_seen="2025-05-31T23:00:00.000Z",
                           last_seen="2025-05-31T23:10:00.000Z", event_count=12, key_uid=AZ_KEY,
                           principal="9e8d7c6b-0000-0000-0000-00000000sql1",
                           explanation="12 failed unwrapKey calls (HTTP 403) in 10 minutes.")),
    ]


def sample_summary() -> dict[str, Any]:
    files = [
        {"path": "sample_logs/aws.cloudtrail/2025.json.gz", "dataset": "aws.cloudtrail",
         "records_in": 1000, "events": 990, "skipped": {"not_kms": 8},
         "quarantined": {"invalid_json": 2}},
        {"path": "sample_logs/azure.keyvault/2025.json", "dataset": "azure.keyvault",
         "records_in": 200, "events": 200, "skipped": {}, "quarantined": {}},
        {"path": "sample_logs/hashicorp_vault.audit/audit.log", "dataset": "hashicorp_vault.audit",
         "records_in": 300, "events": 280, "skipped": {"non_transit": 20}, "quarantined": {}},
    ]
    return {"as_of": AS_OF, "inputs": ["sample_logs/"], "files": files,
            "totals": {"records_in": 1500, "events": 1470, "skipped": {"not_kms": 8,
                                                                       "non_transit": 20},
                       "quarantined": {"invalid_json": 2}},
            "keys": 9, "edges": 8, "alerts": {"critical": 1, "high": 1, "medium": 1}}


def sample_run(compromised: frozenset[str] = frozenset()) -> tuple[
        dict[str, Any], list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]],
        list[dict[str, Any]]]:
    return (sample_summary(), sample_inventory(compromised=compromised), sample_edges(),
            sample_resource_edges(), sample_alerts())


# --- a tiny DOM walk for assertions ----------------------------------------------------------

class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)
        else:
            self.text.append(data)


def parse(html: str) -> _Collector:
    c = _Collector()
    c.feed(html)
    c.close()
    return c


def ids(c: _Collector) -> set[str]:
    return {a["id"] for _, a in c.tags if a.get("id")}


def _rows(html: str, table_id: str) -> Iterator[str]:
    m = re.search(rf'<table id="{table_id}".*?<tbody>(.*?)</tbody>', html, re.S)
    assert m, table_id
    yield from re.findall(r"<tr data-row>.*?</tr>", m.group(1), re.S)


# --- tests ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def html() -> str:
    return render_report(*sample_run())


def test_all_sections_present(html: str) -> None:
    c = parse(html)
    assert {"scope", "inventory", "rotation", "timeline", "graph", "alerts", "resources",
            "inventory-table", "rotation-table", "usage-graph", "alert-list",
            "resources-table", "edges-table", "timelines"} <= ids(c)
    assert html.startswith("<!DOCTYPE html>")
    assert "as of 2025-06-01T00:00:00.000Z" in html


def test_run_scope_header_counts(html: str) -> None:
    text = " ".join(parse(html).text)
    for ds in ("aws.cloudtrail", "azure.keyvault", "hashicorp_vault.audit"):
        assert ds in text
    scope = html[html.index('id="scope"'):html.index('id="inventory"')]
    assert ">1,500<" in scope and ">1,470<" in scope  # totals: records in, events
    assert "invalid_json 2" in scope  # quarantine reason per file
    assert "sample_logs/" in scope


def test_inventory_table_rows_and_states(html: str) -> None:
    rows = list(_rows(html, "inventory-table"))
    assert len(rows) == 9
    by_alias = {re.search(r'class="kname">([^<]*)<', r).group(1): r for r in rows}  # type: ignore[union-attr]
    assert "alias/prod-payments" in by_alias
    assert 'badge b-ok">active<' in by_alias["alias/prod-payments"]
    pending = by_alias["alias/old-reporting"]
    assert 'badge b-gray">deactivated<' in pending and "pending_deletion" in pending
    assert 'b-dark">destroyed<' in by_alias["legacy-wrap"]
    assert "overdue" in by_alias["alias/legacy-backups"]
    assert "auto-rotation off" in by_alias["alias/legacy-backups"]
    # Asymmetric signing key: not eligible, never "rotation disabled".
    signing = by_alias["alias/code-signing"]
    assert "not eligible" in signing and "auto-rotation off" not in signing
    # Created by + last used are shown.
    assert "2022-01-10 09:00<" in by_alias["alias/prod-payments"]
    assert "KeyAdmin" in by_alias["alias/prod-payments"]
    assert "2025-05-30 12:00<" in by_alias["alias/prod-payments"]
    assert ">AWS KMS<" in by_alias["alias/prod-payments"]


def test_rotation_section(html: str) -> None:
    section = html[html.index('id="rotation"'):html.index('id="timeline"')]
    rows = list(_rows(html, "rotation-table"))
    assert rows, "evaluated keys listed"
    # Most overdue first, with the policy that applied.
    assert "alias/old-reporting" in rows[0] or "alias/legacy-backups" in rows[0]
    assert "aws-kms-automatic-rotation-365d" in section
    assert "within cryptoperiod" in section
    assert "Not eligible for automatic rotation" in section
    assert "asymmetric or HMAC key (RSA_4096) cannot be rotated automatically" in section
    assert "imported key material (origin EXTERNAL)" in section
    assert "Automatic rotation disabled on eligible keys" in section
    disabled = section[section.index("Automatic rotation disabled"):]
    assert "alias/legacy-backups" in disabled.split("Not eligible")[0]


def test_timeline_has_transitions_with_provenance(html: str) -> None:
    section = html[html.index('id="timeline"'):html.index('id="graph"')]
    assert len(re.findall(r"<details class=\"tl\" data-row( open)?>", section)) == 8  # HSM: none
    assert section.count("<details class=\"tl\" data-row open>") == report.TIMELINES_OPEN
    assert "ScheduleKeyDeletion" in section and "DisableKey" in section
    assert re.search(r'class="prov">sample_logs/aws\.cloudtrail/2025\.json\.gz@\d+<', section)
    assert "1 key(s) have no lifecycle event" in section
    assert "→" in section


def test_graph_svg_is_server_side_and_deterministic(html: str) -> None:
    svg = html[html.index('<svg class="graph"'):html.index("</svg>", html.index(
        '<svg class="graph"'))]
    assert svg.count('<path class="e') == 7  # 8 edges -> 7 principal/key pairs
    # Cross-account (partner-etl) and failing (Key Vault) pairs are red.
    assert svg.count('class="e red"') == 2
    assert "partner-etl" in svg and "alias/prod-payments" in svg
    widths = [float(w) for w in re.findall(r'stroke-width="([\d.]+)"', svg)]
    assert max(widths) > 2 * min(widths)  # width grows with count


def test_graph_caps_edges_with_note() -> None:
    inv = sample_inventory()
    edges = [_edge(f"arn:aws:iam::{ACCT}:role/r{i:03d}", inv[i % len(inv)]["uid"], "decrypt",
                   1000 - i) for i in range(120)]
    out = render_report({}, inv, edges, [], [])
    svg = out[out.index('<svg class="graph"'):out.index("</svg>", out.index('<svg class="graph"'))]
    assert svg.count('<path class="e') == report.MAX_GRAPH_EDGES
    assert f"top {report.MAX_GRAPH_EDGES} of 120" in out


def test_alerts_section(html: str) -> None:
    section = html[html.index('id="alerts"'):html.index('id="resources"')]
    arts = re.findall(r'<article class="alert sev-(\w+)"', section)
    assert arts == ["critical", "high", "medium"]
    assert "KMS key scheduled for deletion" in section
    assert "T1485 Data Destruction" in section
    assert "sample_logs/aws.cloudtrail/2025.json.gz@2924" in section
    assert "partner-etl in account 444455556666" in section
    assert "No evidence records attached." in section


def test_resource_edges(html: str) -> None:
    rows = list(_rows(html, "resources-table"))
    assert len(rows) == 3
    assert "vol-0abc1234" in rows[0]  # most used first


def test_compromised_key_is_shown() -> None:
    out = render_report(*sample_run(compromised=frozenset({HSM_KEY})))
    assert 'b-bad">compromised<' in out


def test_log_content_is_escaped() -> None:
    uid = f"arn:aws:kms:us-east-1:{ACCT}:key/{XSS}"
    events = {uid: [ev("2024-01-01T00:00:00.000Z", uid, "CreateKey", "create",
                       user=f"arn:aws:iam::{ACCT}:user/{XSS}", key_alias=f"alias/{XSS}",
                       key_spec=f'"><img src=x onerror=alert(1)>{XSS}',
                       path=f"logs/{XSS}.json")]}
    inv = sample_inventory(events)
    edges = [_edge(f"arn:aws:iam::{ACCT}:user/{XSS}", uid, "decrypt", 5, name=XSS,
                   ips=(XSS,))]
    res = [resource_record(uid, XSS, ResourceAccumulator(1, "2024-01-01", "2024-01-02"))]
    alerts = [make_alert(_meta(XSS, XSS, "high", 70, XSS, XSS),
                         Finding(entity=uid, first_seen="2024-01-01T00:00:00.000Z",
                                 last_seen="2024-01-01T00:00:00.000Z", key_uid=uid,
                                 principal=XSS, explanation=XSS,
                                 evidence=[Evidence(XSS, "2024-01-01T00:00:00.000Z", XSS, 1)]))]
    summary = {"as_of": XSS, "inputs": [XSS],
               "files": [{"path": XSS, "dataset": XSS, "records_in": 1, "events": 1,
                          "skipped": {XSS: 0}, "quarantined": {XSS: 0}}]}
    out = render_report(summary, inv, edges, res, alerts)
    assert XSS not in out
    assert "<img" not in out
    assert "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;" in out
    c = parse(out)
    assert [t for t, _ in c.tags].count("script") == 1  # only the report's own script
    assert not any(t == "img" for t, _ in c.tags)
    assert not any(k.startswith("on") for _, a in c.tags for k in a)


def test_csp_pins_inline_script_and_style(html: str) -> None:
    c = parse(html)
    csp = next(a["content"] for t, a in c.tags
               if t == "meta" and a.get("http-equiv") == "Content-Security-Policy")
    assert csp is not None
    assert "default-src 'none'" in csp and "'unsafe-inline'" not in csp
    assert report._csp_hash(c.scripts[0]) in csp


def test_no_network_references(html: str) -> None:
    # Nothing the browser would fetch: no src/href to another origin, no @import, no url().
    c = parse(html)
    for tag, attrs in c.tags:
        for name in ("src", "href"):
            v = attrs.get(name)
            assert v is None or v.startswith("#"), (tag, name, v)
    assert "@import" not in html and "url(" not in html
    # The SVG namespace URI is an identifier, not a fetch.
    assert re.findall(r"https?://[^\s\"'<]+", html.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")) == [
        u for u in re.findall(r"https?://[^\s\"'<]+", html) if "vault.azure.net" in u]


def test_deterministic_and_order_independent() -> None:
    summary, inv, edges, res, alerts = sample_run()
    a = render_report(summary, inv, edges, res, alerts)
    b = render_report(dict(reversed(list(summary.items()))), list(reversed(inv)),
                      list(reversed(edges)), list(reversed(res)), list(reversed(alerts)))
    assert a == b
    assert a.encode() == render_report(*sample_run()).encode()


def test_empty_input() -> None:
    out = render_report({}, [], [], [], [])
    c = parse(out)
    assert {"scope", "inventory", "rotation", "timeline", "graph", "alerts", "resources"} <= ids(c)
    assert "No keys were observed in the input." in out
    assert "No detector raised an alert on this input." in out
    assert "No principal used any key in the input." in out
    assert "as of unknown" in out


def test_ten_thousand_keys_capped_with_note() -> None:
    base = sample_inventory()
    inv = []
    for i in range(10_000):
        r = dict(base[i % len(base)])
        r["uid"] = f"{r['uid']}-{i:05d}"
        r["aliases"] = [f"alias/k{i:05d}"]
        inv.append(r)
    edges = [_edge(APP, inv[i]["uid"], "decrypt", i + 1) for i in range(0, 10_000, 7)]
    out = render_report(sample_summary(), inv, edges, [], [])
    assert len(list(_rows(out, "inventory-table"))) == report.MAX_INVENTORY_ROWS
    assert f"Showing {report.MAX_INVENTORY_ROWS:,} of 10,000 keys" in out
    assert len(out.encode()) < 6_000_000, len(out.encode())


def test_session_keys_are_summarised_and_signals_shown() -> None:
    summary, inventory, edges, resources, alerts = sample_run()
    session = [dict(inventory[0], uid=f"cloudhsm://cluster-7xq2/{524288 + i}", aliases=[],
                    name=None, key_class="ephemeral", lifetime_seconds=float(2 + i),
                    created_at="2025-05-30T10:00:00.000Z", created_by="cluster-7xq2/pay_app")
               for i in range(40)]
    signals = [dict(a, **{"keytrail.signal.disposition": "alert",
                          "keytrail.signal.reason": ""}) for a in alerts]
    signals.append(dict(alerts[0], **{"keytrail.signal.disposition": "routine",
                                      "keytrail.signal.reason": "nightly"}))
    html = render_report(summary, [*inventory, *session], edges, resources, alerts, signals)
    assert len(list(_rows(html, "inventory-table"))) == 9  # the long-lived keys only
    (row,) = _rows(html, "ephemeral-table")
    assert ">40<" in row and "cluster-7xq2/pay_app" in row and "2 / 22 / 41" in row
    assert "524300" not in html.split('id="timeline"')[1]
    sig = list(_rows(html, "signals-table"))
    assert any("routine" in r and ">1<" in r for r in sig)
