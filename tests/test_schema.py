"""The event model is the contract: every emitted field is declared in it."""

from __future__ import annotations

import orjson

from parsers.schema import EXTRA_FIELDS, FIELDS, OPERATION_CLASS, KeyEvent, new_event
from tests.golden_util import GOLDEN

DECLARED = {f.name for f in FIELDS if f.name} | set(EXTRA_FIELDS)


def test_every_golden_field_is_declared_in_the_schema() -> None:
    files = sorted(GOLDEN.rglob("*.golden.json"))
    assert files, "no golden files"
    undeclared: dict[str, str] = {}
    for f in files:
        for ev in orjson.loads(f.read_bytes())["events"]:
            for name in ev:
                if name not in DECLARED:
                    undeclared.setdefault(name, f.name)
    assert not undeclared, f"fields emitted but not in schema.FIELDS/EXTRA_FIELDS: {undeclared}"


def test_extra_fields_live_under_vendor_namespaces() -> None:
    for name, (es_type, desc) in EXTRA_FIELDS.items():
        assert name.split(".")[0] in ("aws", "azure", "hashicorp_vault", "hsm"), name
        assert es_type in ("keyword", "long", "boolean", "date", "text", "ip", "double"), name
        assert desc


def test_flat_roundtrip_and_nesting() -> None:
    ev = new_event(timestamp="2025-01-01T00:00:00.000Z", event_id="e", dataset="aws.cloudtrail",
                   provider="kms.amazonaws.com", action="Decrypt", outcome="success",
                   operation="decrypt", log_file_path="f", log_offset=3, key_uid="k",
                   extra={"aws.cloudtrail.read_only": True})
    assert KeyEvent.from_flat(ev.to_flat()) == ev
    doc = ev.to_doc()
    assert doc["keytrail"]["key"]["uid"] == "k" and doc["aws"]["cloudtrail"]["read_only"] is True
    assert doc["event"]["category"] == ["configuration"] and ev.operation_class == "crypto"


def test_every_operation_has_a_class() -> None:
    # DESIGN.md section 2's classes, plus `network` for calls seen at a VPC endpoint (never a
    # use of a key; issue 11).
    assert set(OPERATION_CLASS.values()) <= {"crypto", "lifecycle", "policy", "read_metadata",
                                             "auth", "other", "network"}
    assert [op for op, c in OPERATION_CLASS.items() if c == "network"] == ["network_activity"]
