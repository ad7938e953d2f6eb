"""The compiled Vault fast path (parsers/native/src/vault.rs) agrees with the Python parser.

Pairing is state shared by both paths (the parser's `pending` table), so the comparison is
per FILE: every file is parsed once with the fast path and once without, and the two
outcome lists (events, skips, quarantines, in order, with offsets) must be identical;
events also by `__dict__` (same attributes, `extra` contents and value types).
"""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parsers import framing, native, vault
from parsers.base import ParseOptions, ParseOutcome, Skipped
from parsers.schema import KeyEvent
from tests.native_util import require_native

require_native()

if vault._NATIVE_STREAM is None:
    pytest.skip("this build of parsers/_native has no vault fast path",
                allow_module_level=True)

NATIVE_STREAM: Callable[..., Any] = vault._NATIVE_STREAM
REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_logs"
REAL_LOGS = REPO.parent / "shared" / "real_logs"


class Counter:
    """Stands in for the native stream class, counting lines framed / handled natively."""

    def __init__(self) -> None:
        self.streams: list[Any] = []

    def __call__(self, *args: Any) -> Any:
        s = NATIVE_STREAM(*args)
        self.streams.append(s)
        return s

    @property
    def offered(self) -> int:
        return sum(s.lines for s in self.streams)

    @property
    def taken(self) -> int:
        return sum(s.native for s in self.streams)


@contextmanager
def native_fn(fn: Callable[..., Any] | None) -> Iterator[None]:
    saved = vault._NATIVE_STREAM
    vault._NATIVE_STREAM = fn
    try:
        yield
    finally:
        vault._NATIVE_STREAM = saved


def run(data: bytes, fn: Callable[..., Any] | None,
        options: ParseOptions | None = None) -> list[ParseOutcome]:
    with native_fn(fn):
        return list(vault.VaultAuditParser(options or ParseOptions()).parse(
            io.BytesIO(data), "logs/vault.log"))


def same(a: ParseOutcome, b: ParseOutcome) -> bool:
    if type(a) is not type(b) or a != b:
        return False
    if isinstance(a, KeyEvent):
        assert isinstance(b, KeyEvent)
        if a.__dict__ != b.__dict__:
            return False
        # value types too (True == 1, 1 == 1.0 would hide a difference)
        for k, v in a.__dict__.items():
            if type(v) is not type(b.__dict__[k]):
                return False
        for k, v in a.extra.items():
            if type(v) is not type(b.extra[k]):
                return False
    return True


def diff(a: ParseOutcome, b: ParseOutcome) -> str:
    if isinstance(a, KeyEvent) and isinstance(b, KeyEvent):
        keys = sorted(set(a.__dict__) | set(b.__dict__))
        return "; ".join(f"{k}: python={a.__dict__.get(k, '<absent>')!r} "
                         f"native={b.__dict__.get(k, '<absent>')!r}"
                         for k in keys if a.__dict__.get(k, "<absent>")
                         != b.__dict__.get(k, "<absent>")
                         or type(a.__dict__.get(k)) is not type(b.__dict__.get(k)))
    return f"python={a!r} native={b!r}"


def check(data: bytes, options: ParseOptions | None = None) -> Counter:
    """Python and native outcomes of `data` are identical; returns the native counter."""
    want = run(data, None, options)
    counter = Counter()
    got = run(data, counter, options)
    assert len(got) == len(want), (len(want), len(got))
    for i, (a, b) in enumerate(zip(want, got, strict=True)):
        assert same(a, b), f"outcome {i}: {diff(a, b)}"
    return counter


def files_under(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob("*") if p.is_file() and p.stat().st_size < 20_000_000)


# ------------------------------------------------------------------------------------------
# every sample / real log file, through the vault parser (foreign formats included: the
# fast path must fall back on them, never disagree)


@pytest.mark.parametrize("path", files_under(SAMPLES), ids=lambda p: str(p.relative_to(SAMPLES)))
def test_sample_logs_agree(path: Path) -> None:
    check(path.read_bytes())


def test_real_logs_agree() -> None:
    files = files_under(REAL_LOGS)
    if not files:
        print(f"skipped: {REAL_LOGS} is absent")
        pytest.skip(f"{REAL_LOGS} is absent")
    offered = taken = 0
    for path in files:
        try:
            c = check(path.read_bytes())
        except AssertionError as exc:
            raise AssertionError(f"{path}: {exc}") from None
        if path.parent.name == "vault":
            offered += c.offered
            taken += c.taken
    print(f"real vault logs: native took {taken}/{offered} lines")
    assert taken >= 0.9 * offered  # the common shapes of real logs take the fast path


def test_bench_corpus_agrees_and_takes_the_fast_path() -> None:
    from bench.corpus import write_corpus

    with tempfile.TemporaryDirectory() as tmp:
        write_corpus(Path(tmp), 8000)
        files = sorted(Path(tmp).glob("vault_*"))
        assert files
        offered = taken = 0
        for f in files:
            c = check(f.read_bytes())
            offered += c.offered
            taken += c.taken
    assert offered > 0
    fallback = 1 - taken / offered
    print(f"bench corpus: fallback rate {fallback:.2%} of {offered} lines")
    assert fallback < 0.05


# ------------------------------------------------------------------------------------------
# pairing edge cases

ALICE = {"client_token": "hmac-sha256:aa", "accessor": "hmac-sha256:acc-alice",
         "display_name": "userpass-alice", "policies": ["default", "kms-admin"],
         "token_policies": ["default", "kms-admin"], "entity_id": "ent-alice",
         "token_type": "service"}
ROOT = {"client_token": "hmac-sha256:rr", "accessor": "hmac-sha256:acc-root",
        "display_name": "root", "policies": ["root"], "token_policies": ["root"],
        "token_type": "service"}
DENIED = "1 error occurred:\n\t* permission denied\n\n"


def rec(rtype: str, path: str, op: str = "update", *, rid: str | None = "r1",
        time: str = "2025-03-01T10:00:00.123456Z", auth: dict[str, Any] | None = None,
        error: str | None = None, data: dict[str, Any] | None = None,
        response: dict[str, Any] | None = None, **req_extra: Any) -> dict[str, Any]:
    req: dict[str, Any] = {"operation": op, "namespace": {"id": "root"}, "path": path,
                           "remote_address": "192.0.2.10", **req_extra}
    if rid is not None:
        req["id"] = rid
    if data is not None:
        req["data"] = data
    out: dict[str, Any] = {"time": time, "type": rtype, "auth": ALICE if auth is None else auth,
                           "request": req}
    if rtype == "response":
        out["response"] = response if response is not None else {}
    if error is not None:
        out["error"] = error
    return out


def pair(path: str, op: str = "update", **kw: Any) -> list[dict[str, Any]]:
    req_kw = {k: v for k, v in kw.items() if k != "response"}
    return [rec("request", path, op, **req_kw), rec("response", path, op, **kw)]


def lines(*records: dict[str, Any] | bytes) -> bytes:
    return b"".join((r if isinstance(r, bytes) else orjson.dumps(r)) + b"\n" for r in records)


def test_unpaired_duplicate_and_out_of_order() -> None:
    a_req, a_resp = pair("transit/encrypt/k1", rid="a")
    b_req, b_resp = pair("transit/decrypt/k2", rid="b", error=DENIED)
    c_req, _ = pair("transit/sign/k3", rid="c")
    d_req, d_resp = pair("secret/data/app/db", "read", rid="d", mount_type="kv",
                         response={"data": {"metadata": {"version": 3}}})
    _, e_resp = pair("transit/hmac/k1", rid="e")
    c = check(lines(a_req, b_req, c_req, a_req, d_req, b_resp, e_resp, a_resp, d_resp, c_req))
    assert c.taken >= 6


def test_response_handled_in_python_pairs_with_native_request() -> None:
    req, resp = pair("transit/encrypt/k1", rid="x")
    resp["request"]["remote_address"] = "[2001:db8::1]:8200"  # IPv6: Python decides
    check(lines(req, resp))
    # and the other way round: request in Python (its error), response native
    req, resp = pair("transit/encrypt/k1", rid="y")
    req["error"] = DENIED
    check(lines(req, resp))
    # request in Python because of a syslog frame (host kept for the paired event)
    req, resp = pair("transit/encrypt/k1", rid="z")
    framed = b"<134>1 2025-03-01T10:00:00Z vault-0 vault - - - " + orjson.dumps(req)
    check(lines(framed, resp))


FRAMES = [b"<134>1 2025-03-01T10:00:00Z vault-0 vault - - - ",
          b"<134>1 2025-03-01T10:00:00Z - vault - - - ",
          b"<134>May  1 10:00:00 host-b vault[123]: ",
          b"May  1 10:00:00 host-c vault[12]: ",
          b"2025-03-01T10:00:00.000Z host-d vault: ",
          b"audit-prefix ", b"   ", b"\xc3\xa9t\xc3\xa9 h\x1cx y z w: ", b"<1>x\ty\x0bz w v "]


@pytest.mark.parametrize("req_frame", [b"", *FRAMES])
@pytest.mark.parametrize("resp_frame", [b"", FRAMES[0], FRAMES[2]])
def test_syslog_frames(req_frame: bytes, resp_frame: bytes) -> None:
    req, resp = pair("transit/encrypt/k1", rid="f")
    c = check(req_frame + orjson.dumps(req) + b"\n" + resp_frame + orjson.dumps(resp) + b"\n"
              + req_frame + orjson.dumps(rec("request", "sys/health", "read")) + b"\n"
              + req_frame + orjson.dumps(rec("request", "transit/sign/k2", rid="g")) + b"\n")
    if (req_frame + resp_frame).isascii():  # non-ASCII frames are left to Python
        assert c.taken >= 2


def test_request_error_and_audit_test() -> None:
    req, resp = pair("transit/encrypt/k1", rid="e1")
    req["error"] = DENIED  # only the request says so: the paired event is a failure
    test_req = rec("request", "sys/audit/test", rid="t1")
    del test_req["auth"]
    escaped = orjson.dumps(rec("request", "transit/sign/k", rid="e2")).replace(
        b'"type"', b'"\\u0065rror":"boom","type"')
    resp2 = orjson.dumps(rec("response", "transit/sign/k", rid="e2"))
    c = check(lines(req, resp, test_req, rec("request", "sys/audit/test", rid="t2"))
              + escaped + b"\n" + resp2 + b"\n")
    assert c.taken == c.offered


def test_table_overflow() -> None:
    saved = vault.MAX_PENDING
    vault.MAX_PENDING = vault._NATIVE_MAX_PENDING = 3  # type: ignore[misc]
    native.NATIVE.vault_init(vault._plan, Skipped, vault._Pending, 3,  # type: ignore[union-attr]
                             vault.LARGE_REQUEST_BYTES)
    try:
        reqs, resps = [], []
        for i in range(8):
            q, r = pair(f"transit/encrypt/k{i}", rid=f"id{i}")
            reqs.append(q)
            resps.append(r)
        c = check(lines(*reqs, *reversed(resps)))
        assert c.taken > 8
    finally:
        vault.MAX_PENDING = vault._NATIVE_MAX_PENDING = saved  # type: ignore[misc]
        native.NATIVE.vault_init(  # type: ignore[union-attr]
            vault._plan, Skipped, vault._Pending, saved, vault.LARGE_REQUEST_BYTES)


@pytest.mark.parametrize("options", [
    ParseOptions(vault_cluster="prod-eu"),
    ParseOptions(include_original=True),
])
def test_options(options: ParseOptions) -> None:
    data = lines(*pair("transit/encrypt/k1", rid="a"), *pair("kv/data/x", "read", rid="b"))
    check(data, options)


SHAPES: list[list[dict[str, Any]]] = [
    pair("transit/encrypt/payments", data={"plaintext": "hmac-sha256:p", "key_version": 2}),
    pair("transit/decrypt/payments", response={"data": {"key_version": 4}}),
    pair("transit/encrypt/payments", data={"batch_input": [{"plaintext": "a"}, {"x": 1}]}),
    pair("transit/keys/k1", "create", data={"type": "aes256-gcm96", "exportable": True}),
    pair("transit/keys/k1/config", data={"min_decryption_version": 2, "deletion_allowed": False,
                                         "auto_rotate_period": "24h", "exportable": 1}),
    pair("transit/export/encryption-key/k1/3", "read"),
    pair("transit/datakey/plaintext/k1", error=DENIED),
    pair("secret/data/app/db", "read", mount_type="kv",
         response={"data": {"metadata": {"version": 7}}}),
    pair("secret/metadata/app/db", "read", mount_type="kv", response={"data": {"version": 1}}),
    pair("secret/destroy/app/db", mount_type="kv", data={"versions": [1, 2, True, "3"]}),
    pair("kv1/app", "delete", mount_type="kv", mount_point="kv1/"),
    pair("pki_int/issue/web", mount_type="pki"),
    pair("sys/policies/acl/admins", "update", auth=ROOT),
    pair("sys/health", "read"),
    pair("sys/audit/file", "update", auth={}),
    pair("auth/userpass/login/alice", auth={"token_type": "default"},
         response={"auth": {"accessor": "hmac-sha256:a2", "display_name": "userpass-alice",
                            "policies": ["default"], "token_policies": ["default", "p"],
                            "entity_id": "e1"}}),
    pair("auth/userpass/login/bob", auth={"token_type": "default"}, error="invalid creds"),
    pair("auth/token/create-orphan", data={"no_parent": True},
         response={"auth": {"policies": ["root"], "accessor": "hmac-sha256:n"}}),
    pair("auth/token/create", data={"no_parent": True}),
    pair("auth/token/lookup-self", "read"),
    pair("cubbyhole/x", "read"),
    pair("transit/encrypt/k1", namespace={"id": "ns1", "path": "team-a/"}),
    pair("transit/encrypt/k1", remote_address="10.0.0.1:55555"),
    pair("transit/encrypt/k1", remote_address=""),
    pair("transit/encrypt/k1", auth={"accessor": "hmac-sha256:x", "token_type": "batch"}),
]


@pytest.mark.parametrize("records", SHAPES, ids=lambda r: r[0]["request"]["path"])
def test_shapes(records: list[dict[str, Any]]) -> None:
    c = check(lines(*records))
    assert c.taken >= 1  # these shapes are all meant for the fast path


# ------------------------------------------------------------------------------------------
# property test: mutated records (dropped / retyped fields, odd strings, escapes)

JSON_SCALARS = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
                | st.floats(allow_nan=False, allow_infinity=False)
                | st.text(max_size=12)
                | st.sampled_from(["", "root", "hmac-sha256:x", "2025-01-01T00:00:00Z",
                                   "1 error occurred:\n\t* denied\n\n", " x\x1c", "\u2028",
                                   "transit/encrypt/k", "request", "response", "update"]))
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from(["id", "path", "version", "x", "auth", "data"]), inner,
                      max_size=3),
    max_leaves=6,
)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


def _mutate(obj: Any, path: tuple[Any, ...], action: str, value: Any) -> Any:
    if not path:
        return value if action == "set" else obj
    head, rest = path[0], path[1:]
    if isinstance(obj, dict):
        obj = dict(obj)
        if not rest and action == "drop":
            obj.pop(head, None)
        else:
            obj[head] = _mutate(obj[head], rest, action, value)
    elif isinstance(obj, list):
        obj = list(obj)
        if not rest and action == "drop":
            del obj[head]
        else:
            obj[head] = _mutate(obj[head], rest, action, value)
    return obj


def _encode(obj: Any, style: int) -> bytes:
    if style == 0:
        try:
            return orjson.dumps(obj)
        except TypeError:  # integers beyond 64 bits
            return json.dumps(obj).encode()
    if style == 1:  # \uXXXX escapes for everything non-ASCII, spaced separators
        return json.dumps(obj, ensure_ascii=True, separators=(", ", ": ")).encode()
    # pretty-ish whitespace inside the line, sorted keys
    return json.dumps(obj, sort_keys=True, separators=(" ,\t", " : "),
                      ensure_ascii=False).encode("utf-8", "surrogatepass")


@st.composite
def mutated_files(draw: st.DrawFn) -> bytes:
    base = draw(st.sampled_from(SHAPES))
    records: list[Any] = [dict(r) for r in base]
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(records) - 1))
        paths = _paths(records[i])
        path = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["set", "drop"]))
        records[i] = _mutate(records[i], path, action, draw(JSON_VALUES))
    out = [_encode(r, draw(st.integers(0, 2))) for r in records]
    if draw(st.booleans()):  # raw text edits orjson may reject (or not)
        i = draw(st.integers(0, len(out) - 1))
        edit = draw(st.sampled_from([b"\\ud800", b"\\u0041", b"\\/", b"\x00", b"\t",
                                     b"\xc3\xa9", b"\xff", b"1e400", b"-0", b"01"]))
        pos = draw(st.integers(0, len(out[i])))
        out[i] = out[i][:pos] + edit + out[i][pos:]
    if draw(st.booleans()):
        out = out[::-1]
    return b"\n".join(out) + b"\n"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_files())
def test_mutated_records_agree(data: bytes) -> None:
    check(data)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30), st.sampled_from(["error", "remote_address", "display_name",
                                               "path"]))
def test_odd_strings_agree(value: str, field: str) -> None:
    req, resp = pair("transit/encrypt/k1", rid="s")
    if field == "error":
        resp["error"] = value
    elif field == "remote_address":
        req["request"]["remote_address"] = resp["request"]["remote_address"] = value
    elif field == "display_name":
        resp["auth"] = {**ALICE, "display_name": value}
    else:
        req["request"]["path"] = resp["request"]["path"] = "transit/encrypt/" + value
    for style in (0, 1):
        try:
            data = _encode(req, style) + b"\n" + _encode(resp, style) + b"\n"
        except (UnicodeEncodeError, TypeError, ValueError):
            continue  # lone surrogates: not encodable as UTF-8 JSON
        check(data)


# ------------------------------------------------------------------------------------------
# framing: the fast path frames lines itself and must match parsers.framing.iter_lines


@st.composite
def framed_files(draw: st.DrawFn) -> bytes:
    recs = [r for shape in draw(st.lists(st.sampled_from(SHAPES), min_size=1, max_size=3))
            for r in shape]
    pieces: list[bytes] = []
    for i, r in enumerate(recs):
        renamed = {**r, "request": {**r["request"], "id": f"id{i % 3}"}}
        pieces.append(orjson.dumps(renamed))
        pieces.append(draw(st.sampled_from([b"", b" ", b"\t \x0b\x0c", b"\r", b"x" * 300,
                                            b"{", b"\x1c", b"  {\"a\": 1}"])))
    sep = [draw(st.sampled_from([b"\n", b"\r\n", b"\n\n", b"\r\r\n"])) for _ in pieces]
    data = b"".join(p + s for p, s in zip(pieces, sep, strict=True))
    if draw(st.booleans()):
        data = data.rstrip(b"\n")  # no final newline
    return data


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(framed_files(), st.sampled_from([0, 1, 2, 7, 64, 333, 1 << 20]),
       st.sampled_from([-1, 0, 16, 200, 500, 800, 1 << 20]))
def test_framing_agrees(data: bytes, chunk: int, max_line: int) -> None:
    saved = framing.CHUNK
    framing.CHUNK = chunk  # type: ignore[misc]
    try:
        check(data, ParseOptions(max_line_bytes=max_line))
    finally:
        framing.CHUNK = saved  # type: ignore[misc]


def test_framing_big_file_across_chunks() -> None:
    recs = [r for i in range(3000) for r in pair(f"transit/encrypt/k{i % 7}", rid=f"b{i}")]
    data = lines(*recs) + b"\r\n   \n" + b"y" * 5000 + b"\n" + lines(*pair("kv/data/a", "read"))
    c = check(data, ParseOptions(max_line_bytes=4096))
    assert c.taken >= 6000


def _v6_forms(ip: Any, form: int, port: int) -> str:
    text: str = [ip.compressed, ip.exploded, ip.compressed.upper(), f"[{ip.compressed}]:{port}",
                 f" {ip.exploded} ", f"[{ip.exploded}]"][form]
    return text


@settings(max_examples=300, deadline=None)
@given(st.ip_addresses(v=6) | st.ip_addresses(v=4), st.integers(0, 5), st.integers(0, 65535))
def test_ip_addresses_agree(ip: Any, form: int, port: int) -> None:
    value = _v6_forms(ip, form, port) if ip.version == 6 else \
        [str(ip), f"{ip}:{port}", f"[{ip}]:{port}", f" {ip}", f"::ffff:{ip}", str(ip)][form]
    req, resp = pair("transit/encrypt/k1", rid="ip", remote_address=value)
    check(lines(req, resp))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789abcdefABCDEF:[].% \x0b\x1cg", max_size=45))
def test_odd_addresses_agree(value: str) -> None:
    req, resp = pair("transit/encrypt/k1", rid="ip", remote_address=value)
    check(lines(req, resp))


def test_large_requests_and_the_byte_bound_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vault, "MAX_PENDING_BYTES", 150_000)
    big = {"plaintext": "B" * (vault.LARGE_REQUEST_BYTES + 10)}
    recs: list[dict[str, Any] | bytes] = []
    for i in range(15):
        q, r = pair(f"transit/encrypt/k{i}", rid=f"id{i}")
        q["request"]["data"] = big
        recs.append(q)
        if i % 3 == 0:
            recs.append(r)
    c = check(lines(*recs))
    assert c.offered > c.taken  # the large requests went to Python
