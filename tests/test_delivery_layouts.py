"""The delivery-layout matrix (issue 11): every container the vendors deliver, every size.

Real logs (../shared/real_logs), sample logs and generated records are re-framed into each
delivery container and parsed four ways: compiled fast paths and pure Python, each from a
plain stream and from a stream whose read() returns a random 1..N bytes. Every layout
must give exactly the event ids (and, where the container adds nothing, the event
content) of the plain one-record-per-line original; no valid record may be quarantined;
and records_in, counted by the framing from the container, must equal the number of
records the test put in. Records of other services are put first, beyond every sniffing
and head window (64 KiB detection, 1 MiB container head).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest

from parsers import azure_keyvault, cloudtrail, native, vault
from parsers.base import REGISTRY, ParseOptions, Quarantined, Skipped
from parsers.detect import parse_stream
from parsers.framing import Tally
from parsers.schema import KeyEvent
from pipelines import generate
from pipelines.sources import MAX_DECOMPRESSED, _BoundedGzip

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "real_logs"
SAMPLES = REPO / "sample_logs"
FILLER_BYTES = (1 << 20) + (256 << 10)  # past the 64 KiB sniff and the 1 MiB head


# ------------------------------------------------------------------ parsing four ways


class Dribble(io.RawIOBase):
    """A stream whose read(n) returns a random 1..max_read bytes (decompressors, sockets)."""

    def __init__(self, data: bytes, max_read: int, seed: int) -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._max = max_read
        self._rng = random.Random(seed)

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            size = len(self._data)
        n = min(size, self._rng.randint(1, self._max))
        out = bytes(self._data[self._pos : self._pos + n])
        self._pos += len(out)
        return out

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)


@contextlib.contextmanager
def python_only() -> Iterator[None]:
    names = ((cloudtrail, "_NATIVE_DOC"), (cloudtrail, "_NATIVE_LINES"),
             (azure_keyvault, "_NATIVE_DOC"), (azure_keyvault, "_NATIVE_LINES"),
             (vault, "_NATIVE_STREAM"))
    saved = [getattr(m, n) for m, n in names]
    try:
        for m, n in names:
            setattr(m, n, None)
        yield
    finally:
        for (m, n), v in zip(names, saved, strict=True):
            setattr(m, n, v)


MODES = [("native", None), ("python", None), ("native", 4099), ("python", 61)]
PROVENANCE = {"log.offset", "log.file.path", "aws.cloudtrail.log_group"}


@dataclass
class Parsed:
    events: list[KeyEvent]
    skipped: Counter[str]
    quarantined: list[Quarantined]
    records_in: int

    @property
    def ids(self) -> list[str]:
        return sorted(e.event_id for e in self.events)

    def content(self) -> list[bytes]:
        return sorted(orjson.dumps({k: v for k, v in e.to_flat().items()
                                    if k not in PROVENANCE}, option=orjson.OPT_SORT_KEYS)
                      for e in self.events)

    @property
    def outcomes(self) -> int:
        return len(self.events) + sum(self.skipped.values()) + len(self.quarantined)


def parse(data: bytes, mode: tuple[str, int | None], seed: int = 0) -> Parsed:
    kind, dribble = mode
    if kind == "native" and not native.available():
        pytest.skip("compiled parsers not built (make native)")
    raw: Any = Dribble(data, dribble, seed) if dribble else io.BytesIO(data)
    stream = _BoundedGzip(raw, MAX_DECOMPRESSED) if data[:2] == b"\x1f\x8b" else raw
    tally = Tally()
    ctx = python_only() if kind == "python" else contextlib.nullcontext()
    with ctx:
        _, outs = parse_stream(stream, "layout", REGISTRY.create_all(ParseOptions()), tally)
        got = Parsed([], Counter(), [], 0)
        for o in outs:
            if isinstance(o, KeyEvent):
                got.events.append(o)
            elif isinstance(o, Skipped):
                got.skipped[o.reason] += 1
            else:
                got.quarantined.append(o)
    got.records_in = tally.records
    return got


def check_layout(files: list[bytes], want: Parsed, n_records: int, *, content: bool = True,
                 id_set: bool = False) -> None:
    """All files of one layout, every mode: the original's events, nothing quarantined,
    records_in == the records put in (and == the outcomes)."""
    for mode in MODES:
        parts = [parse(f, mode, seed=i) for i, f in enumerate(files)]
        records_in = sum(p.records_in for p in parts)
        quarantined = [q for p in parts for q in p.quarantined]
        assert not quarantined, (mode, quarantined[:3])
        assert records_in == n_records, mode
        assert all(p.records_in == p.outcomes for p in parts), mode
        ids = sorted(i for p in parts for i in p.ids)
        if id_set:
            assert set(ids) == set(want.ids), mode
        else:
            assert ids == want.ids, mode
        if content:
            got = sorted(c for p in parts for c in p.content())
            assert got == want.content(), mode


# ------------------------------------------------------------------ corpora


def _ndjson_records(paths: list[Path]) -> list[dict[str, Any]]:
    out = []
    for p in paths:
        for line in p.read_bytes().splitlines():
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
    return out


def _valid(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records the parsers accept (event or skip) one per line: the test's input."""
    keep = []
    for rec in records:
        p = parse(orjson.dumps(rec) + b"\n", ("python", None))
        if not p.quarantined and p.outcomes == 1:
            keep.append(rec)
    return keep


def _real(family: str, pattern: str = "*.ndjson") -> list[Path]:
    d = REAL / family
    if not d.is_dir():
        print(f"{d} absent: the matrix uses sample and generated logs only")
        return []
    return sorted(p for p in d.glob(pattern) if "malformed" not in p.name)


@cache
def ct_records() -> tuple[dict[str, Any], ...]:
    recs = _ndjson_records([*_real("cloudtrail"), SAMPLES / "aws_cloudtrail/ndjson-2026.ndjson"])
    recs = [r for r in recs if "eventName" in r]
    ident = generate.role_identity("app-role")
    for i in range(300):
        key = generate.karn(f"{i % 7:08x}-1111-2222-3333-444455556666")
        name = ("Decrypt", "Encrypt", "GenerateDataKey", "DescribeKey")[i % 4]
        recs.append(generate.ct_record(generate.START + i * 37.5, name, ident, key,
                                       generate.CRYPTO_PARAMS.get(name, lambda k: {})(key)))
    return tuple(_valid(recs))


def ct_filler(nbytes: int = FILLER_BYTES) -> list[dict[str, Any]]:
    """An organization trail's other services: S3, EC2, IAM events naming no KMS key."""
    out, size, i = [], 0, 0
    while size < nbytes:
        rec = {"eventVersion": "1.09", "userIdentity": {"type": "AWSService",
                                                        "invokedBy": "ec2.amazonaws.com"},
               "eventTime": "2025-03-03T00:00:00Z",
               "eventSource": ("s3", "ec2", "iam")[i % 3] + ".amazonaws.com",
               "eventName": ("GetObject", "DescribeInstances", "ListRoles")[i % 3],
               "awsRegion": "us-east-1", "sourceIPAddress": "10.0.0.1",
               "requestParameters": {"bucketName": f"b{i}", "pad": "x" * 900},
               "eventID": f"filler-{i}", "eventType": "AwsApiCall",
               "recipientAccountId": "111122223333"}
        out.append(rec)
        size += len(orjson.dumps(rec))
        i += 1
    return out


@cache
def az_records() -> tuple[dict[str, Any], ...]:
    recs = _ndjson_records([*_real("azure_keyvault"),
                            SAMPLES / "azure_keyvault/pt1h-auditevent.ndjson",
                            SAMPLES / "azure_keyvault/activitylog-administrative.ndjson"])
    for i in range(300):
        obj = generate.kv_uri("keys", f"k{i % 5}") + f"/{i:032x}"
        recs.append(generate.az_record(generate.START + i * 11.0,
                                       ("KeyDecrypt", "KeyWrap", "KeyGet", "SecretGet")[i % 4],
                                       obj, f"oid-{i % 9}", f"u{i % 9}@contoso.example",
                                       "10.1.0.1"))
    return tuple(_valid(recs))


def az_filler(nbytes: int = FILLER_BYTES) -> list[dict[str, Any]]:
    """A subscription-wide Activity Log export: other services' records."""
    out, size, i = [], 0, 0
    while size < nbytes:
        rec = {"time": "2025-03-03T00:00:00.0000000Z",
               "resourceId": f"/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.COMPUTE/"
                             f"VIRTUALMACHINES/VM{i}",
               "operationName": "MICROSOFT.COMPUTE/VIRTUALMACHINES/WRITE",
               "category": "Administrative", "resultType": "Success",
               "correlationId": f"c-{i}", "callerIpAddress": "10.0.0.9",
               "identity": {"claims": {"oid": "o"}}, "level": "Information",
               "properties": {"pad": "y" * 900}}
        out.append(rec)
        size += len(orjson.dumps(rec))
        i += 1
    return out


def nd(records: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in records)


def baseline(records: list[dict[str, Any]]) -> Parsed:
    want = parse(nd(records), ("python", None))
    assert not want.quarantined and want.records_in == len(records)
    return want


# ------------------------------------------------------------------ AWS CloudTrail


def _eventbridge(rec: dict[str, Any]) -> dict[str, Any]:
    return {"version": "0", "id": "e-" + str(rec.get("eventID")),
            "detail-type": "AWS API Call via CloudTrail", "source": "aws.kms",
            "account": "111122223333", "time": rec.get("eventTime"), "region": "us-east-1",
            "resources": [], "detail": rec}


def _cw_event(i: int, rec: dict[str, Any]) -> dict[str, Any]:
    return {"logStreamName": "111122223333_CloudTrail_us-east-1", "timestamp": 1740960000000 + i,
            "message": orjson.dumps(rec).decode(), "ingestionTime": 1740960000500 + i,
            "eventId": f"{i:056d}"}


CT_LAYOUTS: dict[str, Callable[[list[dict[str, Any]]], list[bytes]]] = {
    "s3 object": lambda rs: [orjson.dumps({"Records": rs})],
    "s3 object gz": lambda rs: [gzip.compress(orjson.dumps({"Records": rs}), mtime=0)],
    "s3 object gz, 3 members": lambda rs: [b"".join(
        gzip.compress(c, mtime=0) for c in _thirds(orjson.dumps({"Records": rs})))],
    "pretty-printed object": lambda rs: [orjson.dumps({"Records": rs},
                                                      option=orjson.OPT_INDENT_2)],
    "top-level array": lambda rs: [orjson.dumps(rs)],
    "eventbridge ndjson": lambda rs: [nd([_eventbridge(r) for r in rs])],
    "cloudwatch filter-log-events export": lambda rs: [orjson.dumps(
        {"events": [_cw_event(i, r) for i, r in enumerate(rs)], "searchedLogStreams": [
            {"logStreamName": "111122223333_CloudTrail_us-east-1", "searchedCompletely": True}],
         "nextToken": "tok]}\"en"}, option=orjson.OPT_INDENT_2)],
    "cloudwatch subscription ndjson": lambda rs: [nd([
        {"messageType": "DATA_MESSAGE", "owner": "111122223333", "logGroup": "aws-cloudtrail",
         "logStream": "111122223333_CloudTrail_us-east-1", "subscriptionFilters": ["f"],
         "logEvents": [{"id": str(i), "timestamp": 0, "message": orjson.dumps(r).decode()}
                       for i, r in enumerate(rs[k : k + 40])]}
        for k in range(0, len(rs), 40)])],
}


def _thirds(data: bytes) -> list[bytes]:
    n = len(data) // 3
    return [data[:n], data[n : 2 * n], data[2 * n :]]


@pytest.mark.parametrize("layout", sorted(CT_LAYOUTS))
def test_cloudtrail_layouts(layout: str) -> None:
    recs = ct_filler() + list(ct_records())
    want = baseline(recs)
    assert want.skipped["non_kms_event"] >= len(ct_filler())
    check_layout(CT_LAYOUTS[layout](recs), want, len(recs),
                 content="cloudwatch" not in layout)


def test_cloudtrail_single_event_files_digest_and_insights_alongside() -> None:
    """EventBridge / CloudTrail Lake single events (one pretty-printed event per file),
    with a digest file and an Insights file in the same delivery."""
    recs = list(ct_records())[:40]
    files = [orjson.dumps(_eventbridge(r) if i % 2 else r, option=orjson.OPT_INDENT_2)
             for i, r in enumerate(recs)]
    digest = orjson.dumps({"awsAccountId": "111122223333", "digestStartTime":
                           "2025-03-03T00:00:00Z", "digestEndTime": "2025-03-03T01:00:00Z",
                           "digestS3Bucket": "b", "logFiles": [{"s3Object": "x"}]})
    insight = orjson.dumps({"Records": [{"eventVersion": "1.08", "eventTime":
                                         "2025-03-03T00:00:00Z", "awsRegion": "us-east-1",
                                         "eventID": "i-1", "eventType": "AwsCloudTrailInsight",
                                         "recipientAccountId": "111122223333",
                                         "sharedEventID": "s", "insightDetails": {},
                                         "eventCategory": "Insight",
                                         "eventSource": "kms.amazonaws.com",
                                         "eventName": "Decrypt"}]})
    check_layout([*files, digest, insight], baseline(recs), len(recs) + 2)


@pytest.mark.parametrize("n", [1, 50_000])
def test_cloudtrail_object_record_counts(n: int) -> None:
    base = list(ct_records())
    recs = [dict(base[i % len(base)], eventID=f"n{n}-{i}") for i in range(n)]
    want = baseline(recs)
    for data in (orjson.dumps({"Records": recs}), gzip.compress(orjson.dumps({"Records": recs}),
                                                               compresslevel=1, mtime=0)):
        check_layout([data], want, n)


@pytest.mark.parametrize("size", [200, 100 << 20])
def test_cloudtrail_object_sizes(size: int) -> None:
    """From a 200-byte object to a 100 MB one (generated here: the vendors' typical max)."""
    one = {"eventVersion": "1.09", "eventTime": "2025-03-03T00:00:00Z",
           "eventSource": "kms.amazonaws.com", "eventName": "Decrypt",
           "requestParameters": {"keyId": "1234abcd-12ab-34cd-56ef-1234567890ab"},
           "awsRegion": "us-east-1", "recipientAccountId": "111122223333"}
    recs = [one] if size == 200 else []
    if size > 200:
        base = list(ct_records())
        total, i = 0, 0
        while total < size:
            rec = dict(base[i % len(base)], eventID=f"s-{i}")
            recs.append(rec)
            total += len(orjson.dumps(rec)) + 1
            i += 1
    data = orjson.dumps({"Records": recs})
    assert abs(len(data) - size) < size // 10 + 200
    want = parse(data, ("native", None)) if native.available() else baseline(recs)
    assert want.records_in == len(recs) and not want.quarantined
    check_layout([data], want, len(recs))


# ------------------------------------------------------------------ Azure Key Vault / Managed HSM


AZ_LAYOUTS: dict[str, Callable[[list[dict[str, Any]]], list[bytes]]] = {
    "PT1H.json line per record": lambda rs: [nd(rs)],
    "records wrapper, one line": lambda rs: [orjson.dumps({"records": rs})],
    "records wrapper, pretty": lambda rs: [orjson.dumps({"records": rs},
                                                        option=orjson.OPT_INDENT_2)],
    "records wrapper gz": lambda rs: [gzip.compress(orjson.dumps({"records": rs}), mtime=0)],
    "top-level array": lambda rs: [orjson.dumps(rs)],
    "event hub batches ndjson": lambda rs: [nd([{"records": rs[k : k + 5]}
                                                for k in range(0, len(rs), 5)])],
}


@pytest.mark.parametrize("layout", sorted(AZ_LAYOUTS))
def test_azure_layouts(layout: str) -> None:
    recs = az_filler() + list(az_records())
    want = baseline(recs)
    assert want.skipped["non_keyvault_event"] >= len(az_filler())
    check_layout(AZ_LAYOUTS[layout](recs), want, len(recs))


def test_azure_other_services_alone_are_skipped_not_quarantined() -> None:
    """The same non-Key-Vault record is skipped alone or next to Key Vault records."""
    other = az_filler(1)[:1]
    for data in (nd(other), orjson.dumps({"records": other})):
        got = parse(data, ("python", None))
        assert got.skipped == Counter({"non_keyvault_event": 1}) and got.records_in == 1


def test_azure_blob_of_100_mb() -> None:
    base = list(az_records())
    recs, total, i = [], 0, 0
    while total < 100 << 20:
        rec = dict(base[i % len(base)], correlationId=f"big-{i}")
        recs.append(rec)
        total += len(orjson.dumps(rec)) + 1
        i += 1
    want = parse(nd(recs), ("native", None)) if native.available() else baseline(recs)
    assert want.records_in == len(recs) and not want.quarantined
    check_layout([orjson.dumps({"records": recs})], want, len(recs))


LA_SAMPLES = ["loganalytics-azurediagnostics-export.json",
              "loganalytics-azkvauditlogs-export.ndjson"]


@pytest.mark.parametrize("name", LA_SAMPLES)
def test_log_analytics_exports(name: str) -> None:
    rows = _rows(SAMPLES / "azure_keyvault" / name)
    want = baseline(rows)
    for files in ([orjson.dumps(rows)], [orjson.dumps(rows, option=orjson.OPT_INDENT_2)],
                  [nd(rows)], [orjson.dumps({"records": rows})]):
        check_layout(files, want, len(rows))


def _rows(path: Path) -> list[dict[str, Any]]:
    data = path.read_bytes()
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return _valid(_ndjson_records([path]))
    rows = doc if isinstance(doc, list) else doc.get("records") or doc.get("value") or []
    return _valid([r for r in rows if isinstance(r, dict)])


# ------------------------------------------------------------------ Vault / OpenBao audit


def vault_lines() -> list[bytes]:
    files = [*_real("vault", "*.log"), SAMPLES / "hashicorp_vault/vault-audit-file.log"]
    lines = [ln for p in files for ln in p.read_bytes().splitlines() if ln.strip()]
    return [ln for ln in lines if not parse(ln + b"\n", ("python", None)).quarantined]


def test_vault_file_device_rotated_and_partial_last_line() -> None:
    lines = vault_lines()
    original = b"\n".join(lines) + b"\n"
    want = parse(original, ("python", None))
    assert not want.quarantined
    # Rotation cuts between request and response: ids (the request id) are the same set.
    cut1, cut2 = len(lines) // 3, 2 * len(lines) // 3
    rotated = [b"\n".join(part) + b"\n" for part in (lines[:cut1], lines[cut1:cut2], lines[cut2:])]
    check_layout(rotated, want, len(lines), content=False, id_set=True)
    # A file still being written: the partial last line is quarantined, nothing else.
    partial = original + lines[0][: len(lines[0]) // 2]
    for mode in MODES:
        got = parse(partial, mode)
        assert [q.reason for q in got.quarantined] == ["truncated_record"], mode
        assert got.records_in == len(lines) + 1 == got.outcomes
        assert set(got.ids) == set(want.ids)


def test_vault_socket_syslog_prefix() -> None:
    lines = vault_lines()
    want = parse(b"\n".join(lines) + b"\n", ("python", None))
    framed = b"".join(b"<134>Mar  3 00:00:00 vault-0 vault[812]: " + ln + b"\n" for ln in lines)
    check_layout([framed], want, len(lines), content=False)


# ------------------------------------------------------------------ HSMs


def test_cloudhsm_cloudwatch_exports() -> None:
    events = _ndjson_records([SAMPLES / "hsm/cloudhsm-cloudwatch-export.ndjson"])
    want = baseline(events)
    for files in ([orjson.dumps({"events": events})],
                  [orjson.dumps({"events": events}, option=orjson.OPT_INDENT_2)],
                  [orjson.dumps(events)]):
        check_layout(files, want, len(events))


def test_luna_syslog_and_nshield_audit() -> None:
    luna = [ln for ln in (SAMPLES / "hsm/luna-appliance-syslog.log").read_bytes().splitlines()
            if ln.strip()]
    luna = [ln for ln in luna if not parse(ln + b"\n", ("python", None)).quarantined]
    want = parse(b"\n".join(luna) + b"\n", ("python", None))
    check_layout([b"\r\n".join(luna)], want, len(luna))  # CRLF, no final newline
    check_layout([b"\n".join(luna[:9]) + b"\n", b"\n".join(luna[9:]) + b"\n"], want, len(luna))
    nsh = _valid(_ndjson_records([SAMPLES / "hsm/nshield-ncore-audit.ndjson"]))
    want = baseline(nsh)
    for files in ([orjson.dumps(nsh)], [orjson.dumps({"records": nsh},
                                                     option=orjson.OPT_INDENT_2)]):
        check_layout(files, want, len(nsh))


# ------------------------------------------------------------------ broken containers


def test_container_broken_after_record_k_reports_k_plus_one_span() -> None:
    recs = list(ct_records())[:200]
    data = orjson.dumps({"Records": recs})
    cut = len(orjson.dumps({"Records": recs[:150]})) - 2 + 300  # inside record 151
    for mode in MODES:
        got = parse(data[:cut], mode)
        assert got.records_in == got.outcomes == 151
        assert [q.reason for q in got.quarantined] == ["truncated_record"]
        assert f"-{cut}:" in (got.quarantined[0].detail or "")


def test_corrupt_gzip_keeps_records_before_the_error() -> None:
    recs = list(ct_records())
    good = gzip.compress(nd(recs[:100]), mtime=0)
    for tail in (b"trailing garbage" * 4, gzip.compress(nd(recs[100:]), mtime=0)[:-40]):
        for mode in MODES:
            got = parse(good + tail, mode)
            assert len(got.events) + sum(got.skipped.values()) >= 100
            errors = [q for q in got.quarantined if q.reason == "read_error"]
            assert len(errors) == 1 and "decompressed byte" in (errors[0].detail or "")
            assert got.records_in == got.outcomes


def test_record_over_the_limit_names_the_setting() -> None:
    rec = dict(ct_records()[0], pad="z" * 2_000_000)
    got = parse(orjson.dumps({"Records": [rec, ct_records()[1]]}), ("python", None))
    assert [q.reason for q in got.quarantined] == ["record_too_long"]
    assert "max_line_bytes" in (got.quarantined[0].detail or "")
    assert got.records_in == got.outcomes == 2


def test_vpc_endpoint_network_activity_is_not_a_second_use_of_the_key() -> None:
    """A KMS call logged as the API call and again as a network activity event at the VPC
    endpoint (eventType AwsVpceEvent): one use of the key, and one network activity event
    that names the key but is not a use of it (no key uid, its own operation)."""
    call = dict(ct_records()[-1])
    vpce = {k: call[k] for k in ("eventVersion", "userIdentity", "eventTime", "eventSource",
                                 "eventName", "awsRegion", "sourceIPAddress", "requestID",
                                 "recipientAccountId", "requestParameters", "resources")
            if k in call}
    vpce.update({"eventID": "vpce-1", "eventType": "AwsVpceEvent", "errorCode":
                 "VpceAccessDenied", "sharedEventID": "s-1", "vpcEndpointId": "vpce-0a1",
                 "vpcEndpointAccountId": "111122223333", "eventCategory": "NetworkActivity"})
    for mode in MODES:
        got = parse(orjson.dumps({"Records": [call, vpce]}), mode)
        uses = [e for e in got.events if e.key_uid is not None]
        assert len(uses) == 1 and uses[0].event_id == parse(
            nd([call]), ("python", None)).ids[0], mode
        net = [e for e in got.events if e.operation == "network_activity"]
        assert len(net) == 1 and net[0].key_uid is None, mode
        assert net[0].extra["aws.cloudtrail.network_key"] == uses[0].key_uid, mode
        assert net[0].outcome == "failure" and net[0].category == ["network"], mode
        assert not got.skipped, mode


def test_a_lost_record_breaks_the_accounting(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """records_in comes from the container: a parser that drops a record is caught."""
    from pipelines.process import FileProcessor
    from pipelines.sources import InputFile

    f = tmp_path / "o.json"
    f.write_bytes(orjson.dumps({"Records": list(ct_records())[:30]}))
    proc = FileProcessor(str(tmp_path / "out"), ParseOptions(), "1d", None, write_events=False)
    ok = proc.process(InputFile(str(f), f.stat().st_size)).summary
    assert ok["records_in"] == 30 == ok["events"] + sum(ok["skipped"].values())
    real = cloudtrail.CloudTrailParser._stream

    def lossy(self: Any, *a: Any) -> Iterator[Any]:
        for i, o in enumerate(real(self, *a)):
            if i != 7:
                yield o

    monkeypatch.setattr(cloudtrail.CloudTrailParser, "_stream", lossy)
    lost = proc.process(InputFile(str(f), f.stat().st_size)).summary
    assert lost["records_in"] == 30
    assert lost["events"] + sum(lost["skipped"].values()) + sum(
        lost["quarantined"].values()) == 29


def test_gzip_bomb_is_bounded_by_ratio() -> None:
    bomb = gzip.compress(b" " * (80 << 20), compresslevel=9, mtime=0)  # ~1000:1
    stream = _BoundedGzip(io.BytesIO(bomb), MAX_DECOMPRESSED)
    got = 0
    while chunk := stream.read(1 << 20):
        got += len(chunk)
    assert got < 80 << 20
    assert "ratio" in str(stream.stream_error)
