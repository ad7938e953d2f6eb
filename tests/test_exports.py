"""Inventory exports: CSV columns, JSON stability, the CycloneDX 1.6 CBOM (validated against
the official JSON schema that cyclonedx-python-lib ships), the terminal table and filters."""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any

import pytest

from dashboards import exports
from dashboards.exports import (
    CSV_COLUMNS,
    algorithm_of,
    filter_inventory,
    table,
    to_csv,
    to_cyclonedx,
    to_json,
)
from tests.test_report import (
    AS_OF,
    AZ_KEY,
    HSM_KEY,
    LUNA_KEY,
    VAULT_KEY,
    XSS,
    ev,
    kms,
    sample_inventory,
)

K1 = kms("1111aaaa-0000-4000-8000-000000000001")
K2 = kms("2222bbbb-0000-4000-8000-000000000002")
K3 = kms("3333cccc-0000-4000-8000-000000000003")
K4 = kms("4444dddd-0000-4000-8000-000000000004")
K5 = kms("5555eeee-0000-4000-8000-000000000005")


@pytest.fixture(scope="module")
def inventory() -> list[dict[str, Any]]:
    return sample_inventory()


def by_uid(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["uid"]: r for r in records}


# --- CSV / JSON -----------------------------------------------------------------------------

def test_csv_columns_and_rotation_fields(inventory: list[dict[str, Any]]) -> None:
    text = to_csv(inventory)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(rows[0].keys()) == CSV_COLUMNS
    assert len(rows) == len(inventory)
    assert [r["uid"] for r in rows] == sorted(r["uid"] for r in inventory)
    row = {r["uid"]: r for r in rows}
    legacy = row[K2]
    assert legacy["rotation_status"] == "overdue"
    assert int(legacy["rotation_overdue_days"]) > 1000
    assert legacy["rotation_policy"] == "aws-kms-automatic-rotation-365d"
    assert legacy["rotation_enabled"] == "false" and legacy["rotation_eligible"] == "true"
    assert legacy["aliases"] == "alias/legacy-backups"
    assert row[K3]["rotation_eligible"] == "false"
    assert "asymmetric" in row[K3]["rotation_eligibility_reason"]
    assert row[K5]["state"] == "deactivated" and row[K5]["substate"] == "pending_deletion"
    assert row[K1]["last_used_crypto"] == "2025-05-30T12:00:00.000Z"
    assert row[K1]["rotation_count"] == "1"


def test_csv_neutralises_spreadsheet_formulas() -> None:
    uid = kms("formula")
    inv = sample_inventory({uid: [ev("2024-01-01T00:00:00.000Z", uid, "CreateKey", "create",
                                      user='=HYPERLINK("http://evil","x")',
                                      key_alias="@SUM(1+1)")]})
    row = next(csv.DictReader(io.StringIO(to_csv(inv))))
    assert row["created_by"].startswith("'=")
    assert row["aliases"].startswith("'@")


def test_json_is_stable_and_complete(inventory: list[dict[str, Any]]) -> None:
    a = to_json(inventory)
    assert a == to_json(list(reversed(inventory)))
    data = json.loads(a)
    assert [r["uid"] for r in data] == sorted(r["uid"] for r in inventory)
    assert list(data[0]) == sorted(data[0])
    assert data == sorted(inventory, key=lambda r: r["uid"])  # nothing dropped


# --- CycloneDX ------------------------------------------------------------------------------

def test_cyclonedx_validates_against_official_1_6_schema(inventory: list[dict[str, Any]]) -> None:
    validation = pytest.importorskip(
        "cyclonedx.validation.json",
        reason="cyclonedx-python-lib[validation] (dev extra) ships the CycloneDX 1.6 schema")
    from cyclonedx.schema import SchemaVersion

    bom = to_cyclonedx(inventory, AS_OF)
    validator = validation.JsonStrictValidator(SchemaVersion.V1_6)
    error = validator.validate_str(json.dumps(bom))
    assert error is None, str(error)
    # A broken document must fail the same validator (the check can fail).
    broken = json.loads(json.dumps(bom))
    broken["components"][-1]["cryptoProperties"]["relatedCryptoMaterialProperties"]["state"] = (
        "pending_deletion")
    assert validator.validate_str(json.dumps(broken)) is not None


def test_cyclonedx_required_fields_and_key_components(inventory: list[dict[str, Any]]) -> None:
    bom = to_cyclonedx(inventory, AS_OF)
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] == "1.6"
    assert re.fullmatch(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-"
                        r"[0-9a-f]{12}", bom["serialNumber"])
    assert bom["metadata"]["timestamp"] == AS_OF
    refs = [c["bom-ref"] for c in bom["components"]]
    assert len(refs) == len(set(refs))
    keys = {c["bom-ref"]: c for c in bom["components"]
            if c["cryptoProperties"]["assetType"] == "related-crypto-material"}
    assert set(keys) == {r["uid"] for r in inventory}
    for c in bom["components"]:
        assert c["type"] == "cryptographic-asset"
    m1 = keys[K1]["cryptoProperties"]["relatedCryptoMaterialProperties"]
    assert m1["type"] == "secret-key" and m1["id"] == K1 and m1["state"] == "active"
    assert m1["size"] == 256
    assert m1["creationDate"] == "2022-01-10T09:00:00.000Z"
    assert m1["activationDate"] == "2022-01-10T09:00:00.000Z"
    assert m1["updateDate"] == "2024-09-01T00:00:00.000Z"  # the rotation
    assert m1["securedBy"]["mechanism"] == "AWS KMS"
    # Every algorithmRef points at a component in the BOM.
    for c in keys.values():
        m = c["cryptoProperties"]["relatedCryptoMaterialProperties"]
        for ref in (m.get("algorithmRef"), m.get("securedBy", {}).get("algorithmRef")):
            assert ref is None or ref in refs
    assert keys[K1]["name"] == "alias/prod-payments"
    props = {p["name"]: p["value"] for p in keys[K2]["properties"]}
    assert props["keytrail:rotation:status"] == "overdue"
    assert props["keytrail:rotation:policy"] == "aws-kms-automatic-rotation-365d"
    assert props["keytrail:rotation:enabled"] == "false"
    assert int(props["keytrail:rotation:overdue_days"]) > 1000


def test_cyclonedx_states_types_and_mechanisms(inventory: list[dict[str, Any]]) -> None:
    bom = to_cyclonedx(inventory, AS_OF)
    mat = {c["bom-ref"]: c["cryptoProperties"]["relatedCryptoMaterialProperties"]
           for c in bom["components"]
           if c["cryptoProperties"]["assetType"] == "related-crypto-material"}
    assert mat[K5]["state"] == "deactivated"  # pending_deletion is a deactivated sub-state
    assert mat[LUNA_KEY]["state"] == "destroyed"
    assert mat[LUNA_KEY]["securedBy"]["mechanism"] == "Thales Luna HSM"
    assert mat[K3]["type"] == "private-key" and mat[K3]["size"] == 4096
    assert mat[AZ_KEY]["securedBy"]["mechanism"] == "Azure Key Vault (HSM-protected)"
    assert mat[AZ_KEY]["expirationDate"] == "2026-09-01T00:00:00.000Z"
    assert mat[VAULT_KEY]["securedBy"]["mechanism"] == "HashiCorp Vault transit"
    assert mat[VAULT_KEY]["size"] == 256
    assert mat[HSM_KEY]["type"] == "key"  # spec unknown
    assert "creationDate" not in mat[HSM_KEY]  # creation not observed: no invented date
    compromised = to_cyclonedx(sample_inventory(compromised=frozenset({K1})), AS_OF)
    states = {c["bom-ref"]: c["cryptoProperties"]["relatedCryptoMaterialProperties"]["state"]
              for c in compromised["components"] if c["bom-ref"] == K1}
    assert states == {K1: "compromised"}


def test_cyclonedx_is_deterministic_and_serial_tracks_content(
        inventory: list[dict[str, Any]]) -> None:
    a = exports.to_cyclonedx_json(inventory, AS_OF)
    assert a == exports.to_cyclonedx_json(list(reversed(inventory)), AS_OF)
    other = to_cyclonedx(inventory, "2025-07-01T00:00:00.000Z")
    assert other["serialNumber"] != json.loads(a)["serialNumber"]
    with pytest.raises(ValueError, match="as_of"):
        to_cyclonedx(inventory, "yesterday")


def test_cyclonedx_empty_inventory_is_valid() -> None:
    bom = to_cyclonedx([], AS_OF)
    assert bom["components"] == []
    validation = pytest.importorskip("cyclonedx.validation.json")
    from cyclonedx.schema import SchemaVersion

    assert validation.JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(bom)) is None


@pytest.mark.parametrize(("spec", "usage", "name", "material", "size"), [
    ("SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", "AES-256-GCM", "secret-key", 256),
    ("RSA_2048", "SIGN_VERIFY", "RSA-2048", "private-key", 2048),
    ("ECC_NIST_P384", "SIGN_VERIFY", "ECDSA-secp384r1", "private-key", 384),
    ("ECC_NIST_P256", "KEY_AGREEMENT", "ECDH-secp256r1", "private-key", 256),
    ("HMAC_512", "GENERATE_VERIFY_MAC", "HMAC-SHA512", "secret-key", 512),
    ("aes128-gcm96", None, "AES-128-GCM", "secret-key", 128),
    ("chacha20-poly1305", None, "ChaCha20-Poly1305", "secret-key", 256),
    ("ed25519", None, "Ed25519", "private-key", 256),
    ("ecdsa-p521", None, "ECDSA-secp521r1", "private-key", 521),
    ("rsa-4096", None, "RSA-4096", "private-key", 4096),
    ("RSA-HSM", None, "RSA", "private-key", None),
    ("oct-HSM", None, "AES", "secret-key", None),
    ("AES-256", None, "AES-256", "secret-key", 256),
    ("ML_DSA_65", "SIGN_VERIFY", "ML-DSA-65", "private-key", None),
])
def test_algorithm_mapping(spec: str, usage: str | None, name: str, material: str,
                           size: int | None) -> None:
    alg = algorithm_of(spec, usage)
    assert alg is not None
    assert (alg.name, alg.material, alg.size) == (name, material, size)


def test_unknown_spec_has_no_algorithm() -> None:
    assert algorithm_of("FROBNICATE_9", None) is None
    assert algorithm_of(None, None) is None


# --- table and filters ----------------------------------------------------------------------

def test_table_lists_every_key(inventory: list[dict[str, Any]]) -> None:
    out = table(inventory)
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["KEY", "PROVIDER", "STATE", "ROTATION"]
    assert len(lines) == 2 + len(inventory) + 1
    assert "alias/legacy-backups" in out and "deactivated (pending_deletion)" in out
    assert lines[-1] == f"{len(inventory)} key(s), 3 overdue for rotation"
    assert "(no keys)" in table([])


def test_table_neutralises_terminal_escapes() -> None:
    uid = kms("esc")
    inv = sample_inventory({uid: [ev("2024-01-01T00:00:00.000Z", uid, "CreateKey", "create",
                                      key_alias="alias/\x1b[31mred\x1b[0m\u202eevil" + XSS)]})
    out = table(inv)
    assert "\x1b" not in out and "\u202e" not in out
    assert "alias/?[31mred" in out


def test_filters(inventory: list[dict[str, Any]]) -> None:
    def uids(rs: list[dict[str, Any]]) -> set[str]:
        return {r["uid"] for r in rs}

    assert filter_inventory(inventory) == inventory
    assert uids(filter_inventory(inventory, overdue=True)) == {K2, K4, K5}
    assert uids(filter_inventory(inventory, state="destroyed")) == {LUNA_KEY}
    assert uids(filter_inventory(inventory, state="pending_deletion")) == {K5}
    assert uids(filter_inventory(inventory, state="DEACTIVATED")) == {K5}
    aws = uids(filter_inventory(inventory, provider="aws_kms"))
    assert aws == {K1, K2, K3, K4, K5}
    assert uids(filter_inventory(inventory, provider="AWS KMS")) == aws
    assert uids(filter_inventory(inventory, provider="aws_kms", overdue=True,
                                 state="active")) == {K2, K4}
    assert filter_inventory(inventory, kind="secret") == []
    assert len(filter_inventory(inventory, kind="key")) == len(inventory)


def test_render_dispatch(inventory: list[dict[str, Any]]) -> None:
    for fmt in exports.FORMATS:
        assert exports.render(fmt, inventory, AS_OF)
    with pytest.raises(ValueError, match="table, csv, json, cyclonedx"):
        exports.render("xml", inventory, AS_OF)
