"""The compiled CloudTrail fast path (parsers/native/src/cloudtrail.rs) agrees with the Python
parser: every event it builds equals the Python one (== and __dict__), it declines (None /
raw record back to Python) anything else, and it does take the common record shapes."""

from __future__ import annotations

import contextlib
import copy
import gzip
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.corpus import write_corpus
from parsers import cloudtrail, native
from parsers.base import ParseOptions
from parsers.cloudtrail import CloudTrailParser
from parsers.detect import detect
from parsers.schema import KeyEvent
from tests.native_util import require_native

require_native()

REPO = Path(__file__).resolve().parents[1]
ROOTS = (REPO / "sample_logs", REPO.parent / "shared" / "real_logs")
OPTIONS = (ParseOptions(), ParseOptions(redact_encryption_context=True))


class Counts:
    """How many records the fast path turned into events, and how many it handed back."""

    def __init__(self) -> None:
        self.native = 0
        self.declined = 0


def _counting(counts: Counts) -> tuple[Callable[..., Any], Callable[..., Any]]:
    doc_fn = native.NATIVE.cloudtrail_document  # type: ignore[union-attr]
    lines_cls = native.NATIVE.CloudTrailLines  # type: ignore[union-attr]

    def doc(data: bytes, path: str, redact: bool) -> Iterator[Any] | None:
        it = doc_fn(data, path, redact)
        if it is None:
            return None

        def gen() -> Iterator[Any]:
            for item in it:
                if type(item) is tuple:  # (index, raw record): back to Python
                    counts.declined += 1
                else:
                    counts.native += 1
                yield item

        return gen()

    class Lines:
        def __init__(self, path: str, redact: bool) -> None:
            self._inner = lines_cls(path, redact)

        def event(self, line: bytes, offset: int) -> Any:
            ev = self._inner.event(line, offset)
            if ev is None:
                counts.declined += 1
            else:
                counts.native += 1
            return ev

    return doc, Lines


def run(data: bytes, path: str, options: ParseOptions, use_native: bool,
        counts: Counts | None = None) -> list[Any]:
    saved = cloudtrail._NATIVE_DOC, cloudtrail._NATIVE_LINES
    try:
        if not use_native:
            cloudtrail._NATIVE_DOC = cloudtrail._NATIVE_LINES = None
        elif counts is not None:
            cloudtrail._NATIVE_DOC, cloudtrail._NATIVE_LINES = _counting(counts)
        return list(CloudTrailParser(options).parse(io.BytesIO(data), path))
    finally:
        cloudtrail._NATIVE_DOC, cloudtrail._NATIVE_LINES = saved


def assert_same(data: bytes, path: str = "t.json", options: ParseOptions | None = None,
                counts: Counts | None = None) -> list[Any]:
    """Parse with and without the fast path: the same outcomes, field for field."""
    options = options or ParseOptions()
    want = run(data, path, options, use_native=False)
    got = run(data, path, options, use_native=True, counts=counts)
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert type(g) is type(w), (i, g, w)
        assert g == w, (i, g, w)
        if type(w) is KeyEvent:
            assert g.__dict__ == w.__dict__, i
            for k, v in w.__dict__.items():
                assert type(g.__dict__[k]) is type(v), (i, k)
            for k, v in w.extra.items():
                assert type(g.extra[k]) is type(v), (i, k)
    return got


def _read(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def _cloudtrail_files() -> list[Path]:
    parser = CloudTrailParser()
    out = []
    for root in ROOTS:
        if not root.is_dir():
            print(f"skipping {root}: absent")
            continue
        for p in sorted(root.rglob("*")):
            if (p.is_file() and p.suffix in (".json", ".ndjson", ".gz", ".log", ".jsonl")
                    and detect(_read(p)[:65536], [parser]) is parser):
                out.append(p)
    return out


FILES = _cloudtrail_files()


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
@pytest.mark.parametrize("options", OPTIONS, ids=["default", "redact"])
def test_sample_and_real_logs_agree(path: Path, options: ParseOptions) -> None:
    counts = Counts()
    assert_same(_read(path), path.name, options, counts)
    print(f"{path.name}: native {counts.native}, declined {counts.declined}")


def test_sample_and_real_logs_use_the_fast_path() -> None:
    if not FILES:
        pytest.skip("no CloudTrail sample or real logs found")
    counts = Counts()
    for p in FILES:
        assert_same(_read(p), p.name, ParseOptions(), counts)
    total = counts.native + counts.declined
    print(f"sample+real logs: native {counts.native} of {total} records offered")
    assert counts.native > 0


def test_include_original_bypasses_the_fast_path() -> None:
    data = orjson.dumps({"Records": [_base()]})
    counts = Counts()
    assert_same(data, options=ParseOptions(include_original=True), counts=counts)
    assert counts.native == counts.declined == 0


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, bytes]]:
    out = tmp_path_factory.mktemp("corpus")
    write_corpus(out, 4000)
    return [(p.name, gzip.decompress(p.read_bytes())) for p in sorted(out.glob("ct_*"))]


def test_bench_corpus_documents(corpus: list[tuple[str, bytes]]) -> None:
    counts = Counts()
    for name, data in corpus:
        assert_same(data, name, ParseOptions(), counts)
    total = counts.native + counts.declined
    assert total >= 2000
    assert counts.declined / total < 0.05, (counts.native, counts.declined)


def test_bench_corpus_as_ndjson(corpus: list[tuple[str, bytes]]) -> None:
    counts = Counts()
    for name, data in corpus:
        recs = orjson.loads(data)["Records"]
        body = b"".join(orjson.dumps(r) + b"\n" for r in recs)
        assert_same(body, name + ".ndjson", ParseOptions(), counts)
        pretty = json.dumps({"Records": recs[:50]}, indent=2).encode()
        assert_same(pretty, name + ".pretty.json", ParseOptions(), counts)
    total = counts.native + counts.declined
    assert counts.declined / total < 0.05, (counts.native, counts.declined)


# --- mutated records -------------------------------------------------------------------

ACCT = "111122223333"
KEY = "1f0e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
ARN = f"arn:aws:kms:us-east-1:{ACCT}:key/{KEY}"


def _base() -> dict[str, Any]:
    return {
        "eventVersion": "1.08",
        "userIdentity": {
            "type": "AssumedRole", "principalId": "AROAEXAMPLE:s1",
            "arn": f"arn:aws:sts::{ACCT}:assumed-role/app/s1", "accountId": ACCT,
            "accessKeyId": "ASIAEXAMPLE",
            "sessionContext": {"sessionIssuer": {"type": "Role",
                                                 "arn": f"arn:aws:iam::{ACCT}:role/app",
                                                 "accountId": ACCT, "userName": "app"}}},
        "eventTime": "2026-03-01T10:00:00Z",
        "eventSource": "kms.amazonaws.com", "eventName": "Decrypt", "awsRegion": "us-east-1",
        "sourceIPAddress": "198.51.100.7", "userAgent": "aws-sdk-go/1.44.0",
        "requestParameters": {"keyId": ARN, "encryptionAlgorithm": "SYMMETRIC_DEFAULT",
                              "encryptionContext": {"aws:s3:arn": "arn:aws:s3:::b/o",
                                                    "SecretARN": "arn:aws:secretsmanager:x"}},
        "responseElements": None,
        "requestID": "req-1", "eventID": "evt-1", "readOnly": True,
        "resources": [{"accountId": ACCT, "type": "AWS::KMS::Key", "ARN": ARN}],
        "eventType": "AwsApiCall", "managementEvent": True, "recipientAccountId": ACCT,
        "eventCategory": "Management", "tlsDetails": {"tlsVersion": "TLSv1.3"},
    }


ODD_VALUES = st.sampled_from([
    None, "", 0, 1, -1, 1.5, True, False, [], {}, ["x"], {"a": "b"}, "x", "  ", "TRUE",
    "false", "alias/app", f"arn:aws:kms:us-east-1:{ACCT}:alias/app", KEY, "mrk-1234",
    "arn:aws:kms:us-east-1::key/", "arn:aws:s3:::bucket", "a/b", "a:b", "2001:db8::1",
    "[2001:db8::1]:443", "10.0.0.1:8080", "010.0.0.1", "AWS Internal", "kms.amazonaws.com",
    "2026-03-01T10:00:00.123456Z", "2026-03-01T10:00:00+02:00", "2026-02-30T10:00:00Z",
    "2026-03-01 10:00:00", "é ü \u2028 \x7f", "\U0001f600", "AwsCloudTrailInsight",
    "Encrypt", "GenerateDataKey", "DescribeKey", "ListKeys", "GetSomething", "CreateGrant",
    "ReEncrypt", "CreateAlias", "DeleteAlias", "Root", "IAMUser", "AWSService", "AWSAccount",
    "FederatedUser", "IdentityCenterUser", "s3.amazonaws.com", "us-gov-west-1", "cn-north-1",
    "arn:aws:sts::1:assumed-role/r/", "p:", "123456789012", 10**20, "ASIA", "Management",
])

PATHS = [
    ("eventName",), ("eventSource",), ("eventTime",), ("eventID",), ("eventType",),
    ("eventVersion",), ("eventCategory",), ("sharedEventID",), ("vpcEndpointId",),
    ("awsRegion",), ("recipientAccountId",), ("sourceIPAddress",), ("userAgent",),
    ("requestID",), ("errorCode",), ("errorMessage",), ("readOnly",), ("insightDetails",),
    ("tlsDetails",), ("tlsDetails", "tlsVersion"), ("resources",), ("resources", 0),
    ("resources", 0, "ARN"), ("resources", 0, "arn"), ("serviceEventDetails",),
    ("serviceEventDetails", "keyId"), ("additionalEventData",),
    ("requestParameters",), ("requestParameters", "keyId"),
    ("requestParameters", "customKeyStoreId"), ("requestParameters", "encryptionContext"),
    ("requestParameters", "encryptionContext", "aws:s3:arn"),
    ("requestParameters", "encryptionContext", "SecretARN"),
    ("requestParameters", "encryptionContext", "aws:ebs:id"),
    ("requestParameters", "kmsKeyId"), ("responseElements",),
    ("responseElements", "keyId"), ("responseElements", "customKeyStoreId"),
    ("userIdentity",), ("userIdentity", "type"), ("userIdentity", "arn"),
    ("userIdentity", "principalId"), ("userIdentity", "accountId"),
    ("userIdentity", "accessKeyId"), ("userIdentity", "userName"),
    ("userIdentity", "invokedBy"), ("userIdentity", "sessionContext"),
    ("userIdentity", "sessionContext", "sessionIssuer"),
    ("userIdentity", "sessionContext", "sessionIssuer", "arn"),
    ("userIdentity", "sessionContext", "sessionIssuer", "userName"),
    ("userIdentity", "onBehalfOf"), ("userIdentity", "onBehalfOf", "userId"),
    ("unknownField",), ("requestParameters", "nested", "deep"),
]


def _apply(rec: dict[str, Any], path: tuple[Any, ...], value: Any, drop: bool) -> None:
    node: Any = rec
    for step in path[:-1]:
        if isinstance(node, dict):
            if not isinstance(node.get(step), dict | list):
                node[step] = {} if not isinstance(path[path.index(step) + 1], int) else [{}]
            node = node[step]
        elif isinstance(node, list) and isinstance(step, int):
            if not node:
                node.append({})
            if not isinstance(node[0], dict):
                node[0] = {}
            node = node[0]
        else:
            return
    last = path[-1]
    if isinstance(node, dict):
        if drop:
            node.pop(last, None)
        else:
            node[last] = value
    elif isinstance(node, list) and isinstance(last, int):
        if drop:
            node.clear()
        elif node:
            node[0] = value
        else:
            node.append(value)


MUTATIONS = st.lists(
    st.tuples(st.sampled_from(PATHS), ODD_VALUES | st.text(max_size=12), st.booleans()),
    max_size=4,
)


def _encodings(rec: dict[str, Any]) -> list[bytes]:
    out = [orjson.dumps(rec)]
    with contextlib.suppress(TypeError, ValueError):
        out.append(json.dumps(rec, ensure_ascii=True).encode())  # \uXXXX escapes
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(MUTATIONS, st.sampled_from(OPTIONS))
def test_mutated_records_agree_or_decline(
    mutations: list[tuple[tuple[Any, ...], Any, bool]], options: ParseOptions
) -> None:
    rec = _base()
    for path, value, drop in mutations:
        _apply(rec, path, value, drop)
    try:
        encoded = _encodings(rec)
    except TypeError:
        return
    second = copy.deepcopy(_base())
    second["eventID"] = "evt-2"
    for line in encoded:
        assert_same(line + b"\n" + orjson.dumps(second) + b"\n", "t.ndjson", options)
        assert_same(b'{"Records": [' + line + b", " + orjson.dumps(second) + b"]}",
                    "t.json", options)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=40), st.integers(0, 1200))
def test_corrupted_bytes_agree(junk: bytes, at: int) -> None:
    good = orjson.dumps({"Records": [_base(), _base()]})
    at = min(at, len(good))
    data = good[:at] + junk + good[at:]
    assert_same(data, "t.json")
    assert_same(orjson.dumps(_base())[: at // 2] + junk + b"\n" + orjson.dumps(_base()),
                "t.ndjson")


@pytest.mark.parametrize("data", [
    b'{"Records": [{"eventName": "Decrypt", "x": "\\ud800"}]}',
    b'{"Records": [], "x": "\\udc00"}',
    b'{"Records": [{"eventName": "Decrypt", "x": 1e400}]}',
    b'{"Records": [{"eventName": "Decrypt", "x": 1' + b"0" * 400 + b"}]}",
    b'{"Records": [], "Records": []}',
    b'{"Records": {}}',
    b'{"Records": [1, "x", null, [], {}]}',
    b'{"Rec\\u006frds": [{"eventName": "Decrypt"}]}',
    b'\xef\xbb\xbf{"Records": []}',
    b'[{"eventName": "Decrypt"}]',
    b'{"Records": []} x',
    b'{"Records": [{"eventName": "Decrypt", "eventName": "Encrypt"}]}',
    b'{"Records": [{"eventName": "Decrypt", "x": "\xff"}]}',
    b'{"eventName": "Decrypt", "eventSource": "kms.amazonaws.com"}\n{"a": 1e400}\n',
    b'{"eventName": "Decrypt", "x": "\\ud800", "eventSource": "kms.amazonaws.com"}\n\n',
])
def test_edge_documents_agree(data: bytes) -> None:
    rec = orjson.dumps(_base())
    assert_same(data)
    assert_same(data.replace(b'{"eventName": "Decrypt"', rec[:-1] + b', "y": 0', 1))


def test_alias_state_stays_python() -> None:
    """Alias references read per-parse state: a CreateAlias seen earlier resolves them."""
    create = _base()
    create.update(eventName="CreateAlias", eventID="e0", requestParameters={
        "aliasName": "alias/app", "targetKeyId": KEY})
    use = _base()
    use.update(eventID="e1", resources=[])
    use["requestParameters"]["keyId"] = "alias/app"
    recs = [create, use, _base()]
    counts = Counts()
    got = assert_same(orjson.dumps({"Records": recs}), counts=counts)
    assert got[1].key_uid == ARN and got[1].key_alias == "alias/app"
    assert counts.native == 1 and counts.declined == 2


# --- non-KMS events: skipped natively unless a field may name a KMS key -------------------

KEY_NAMES = st.sampled_from([
    "kmsKeyId", "KMSKeyId", "kmskeyarn", "SSEKMSKeyId", "KMSMasterKeyID", "kmsMasterKeyArn",
    "x-amz-server-side-encryption-aws-kms-key-id", "keyId", "bucketName", "\u212amsKeyId",
    "kmsKeyIdx", "name",
])
LEAVES = st.sampled_from(["", "k", ARN, "alias/x", None, 1, True, [], {}])
TREES = st.recursive(
    LEAVES,
    lambda kids: st.lists(kids, max_size=35) | st.dictionaries(KEY_NAMES, kids, max_size=4),
    max_leaves=40,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TREES, TREES, TREES, st.sampled_from(["s3.amazonaws.com", "ec2.amazonaws.com"]),
       st.sampled_from(["GetObject", "PutObject", "CreateVolume", "ListBuckets"]))
def test_non_kms_events_agree(rp: Any, re_: Any, aed: Any, source: str, name: str) -> None:
    rec = _base()
    rec.update(eventSource=source, eventName=name, requestParameters=rp,
               responseElements=re_, additionalEventData=aed)
    counts = Counts()
    assert_same(orjson.dumps({"Records": [rec]}), counts=counts)
    assert_same(orjson.dumps(rec) + b"\n", "t.ndjson")


def test_non_kms_events_are_skipped_natively() -> None:
    plain = _base()
    plain.update(eventSource="s3.amazonaws.com", eventName="GetObject",
                 requestParameters={"bucketName": "b", "key": "o"},
                 additionalEventData={"bytesTransferredOut": 10})
    named = copy.deepcopy(plain)
    named["requestParameters"]["x-amz-server-side-encryption-aws-kms-key-id"] = ARN
    deep = copy.deepcopy(plain)
    deep["responseElements"] = {"a": {"b": {"c": {"d": {"e": {"kmsKeyId": ARN}}}}}}  # too deep
    insight = copy.deepcopy(plain)
    insight["insightDetails"] = {}
    counts = Counts()
    got = assert_same(orjson.dumps({"Records": [plain, named, deep, insight]}), counts=counts)
    assert [type(o).__name__ for o in got] == ["Skipped", "KeyEvent", "Skipped", "Skipped"]
    assert (counts.native, counts.declined) == (3, 1)


def _chain(depth: int, leaf: Any, kind: str) -> Any:
    node = leaf
    for _ in range(depth):
        node = {"n": node} if kind == "dict" else [node]
    return node


@pytest.mark.parametrize("field", ["requestParameters", "responseElements",
                                   "additionalEventData"])
@pytest.mark.parametrize("depth", range(7))
@pytest.mark.parametrize("kind", ["dict", "list", "mixed"])
def test_non_kms_scan_depth_boundaries(field: str, depth: int, kind: str) -> None:
    leaf = {"kmsKeyId": ARN}
    node: Any = leaf
    for i in range(depth):
        k = kind if kind != "mixed" else ("dict" if i % 2 else "list")
        node = _chain(1, node, k)
    wide = [{"x": 1}] * 31 + [leaf] + [{"y": 2}]
    wider = [{"x": 1}] * 32 + [leaf]
    recs = []
    for value in (node, {"w": node}, {"l": wide}, {"l": wider}, wide, wider, {"n": [[leaf]]}):
        rec = _base()
        rec.update(eventSource="s3.amazonaws.com", eventName="PutObject")
        rec[field] = value
        recs.append(rec)
    assert_same(orjson.dumps({"Records": recs}))
