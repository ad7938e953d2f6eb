"""Hostile containers get a clear quarantine reason naming the bound, and the records
around them are still read, on the native and the Python paths alike (issue 15)."""

from __future__ import annotations

import json

import pytest

from parsers.base import MAX_JSON_DEPTH, KeytrailError, ParseOptions, Quarantined
from parsers.detect import parse_bytes
from parsers.schema import KeyEvent
from pipelines.config import parse_config
from tests.fuzz.targets import outcome_key, python_only
from tests.golden_util import SAMPLES

DEPTH = 100_000


def _first_line(rel: str) -> bytes:
    return (SAMPLES / rel).read_bytes().split(b"\n", 1)[0]


def _deep_records() -> dict[str, bytes]:
    ct = _first_line("aws_cloudtrail/eventbridge-kms.ndjson")
    vault = _first_line("hashicorp_vault/vault-audit-file.log")
    kv = _first_line("azure_keyvault/pt1h-auditevent.ndjson")
    nest = b"[" * DEPTH + b"]" * DEPTH
    return {
        "cloudtrail": ct + b"\n" + ct[:-1] + b',"deep":' + nest + b"}\n" + ct + b"\n",
        "vault": vault + b"\n" + vault[:-1] + b',"deep":' + nest + b"}\n" + vault + b"\n",
        "keyvault": kv + b"\n" + kv[:-1] + b',"deep":' + nest + b"}\n" + kv + b"\n",
    }


def _both(data: bytes, options: ParseOptions | None = None) -> list:
    _, got = parse_bytes(data, "hostile.log", options)
    with python_only():
        _, ref = parse_bytes(data, "hostile.log", options)
    assert [outcome_key(o) for o in got] == [outcome_key(o) for o in ref]
    return got


@pytest.mark.parametrize("family", ["cloudtrail", "vault", "keyvault"])
def test_deep_nesting_is_quarantined_with_its_own_reason(family: str) -> None:
    data = _deep_records()[family]
    json.loads(data.split(b"\n")[0])  # the neighbours are valid
    out = _both(data)
    quar = [o for o in out if isinstance(o, Quarantined)]
    assert [q.reason for q in quar] == ["nesting_too_deep"], [q.to_dict() for q in quar]
    assert f"deeper than {MAX_JSON_DEPTH} levels" in (quar[0].detail or "")
    assert "MAX_JSON_DEPTH" in (quar[0].detail or "")
    assert len(quar[0].excerpt) <= 520  # bounded excerpt, not the 200 KB record
    assert sum(isinstance(o, KeyEvent) for o in out) >= 1  # later records still read


def test_huge_line_names_the_bound_and_the_rest_is_read() -> None:
    line = _first_line("aws_cloudtrail/ndjson-2026.ndjson")
    huge = b'{"eventVersion":"1.08","userAgent":"' + b"A" * 20_000 + b'"}'
    opts = ParseOptions(max_line_bytes=8192)
    out = _both(line + b"\n" + huge + b"\n" + line + b"\n", opts)
    quar = [o for o in out if isinstance(o, Quarantined)]
    assert [q.reason for q in quar] == ["line_too_long"]
    detail = quar[0].detail or ""
    assert "longer than 8192 bytes" in detail and "parse.max_line_bytes" in detail
    assert sum(isinstance(o, KeyEvent) for o in out) == 2


def test_max_line_bytes_is_a_config_option() -> None:
    assert parse_config({"parse": {"max_line_bytes": 4096}}).parse.max_line_bytes == 4096
    with pytest.raises(KeytrailError, match=r"parse\.max_line_bytes"):
        parse_config({"parse": {"max_line_bytes": 10}})
