"""NIST SP 800-57 state machine, rotation and eligibility over event sequences per provider."""

from __future__ import annotations

from typing import Any

import pytest

from detectors.inventory import (
    CryptoperiodPolicy,
    KeyAccumulator,
    build_inventory_record,
)
from parsers.base import stable_id
from parsers.schema import KeyEvent, new_event

PROVIDER_DATASET = {
    "aws_kms": "aws.cloudtrail",
    "azure_keyvault": "azure.keyvault",
    "vault_transit": "hashicorp_vault.audit",
    "cloudhsm": "hsm.cloudhsm",
}


def ev(provider: str, ts: str, op: str, action: str, outcome: str = "success",
       **kw: Any) -> KeyEvent:
    return new_event(
        timestamp=ts, event_id=stable_id(provider, ts, action), dataset=PROVIDER_DATASET[provider],
        provider=provider, action=action, outcome=outcome, operation=op,  # type: ignore[arg-type]
        log_file_path="f.log", log_offset=0, key_uid=f"uid-{provider}", key_provider=provider,
        key_kind="key", user_id=kw.pop("user_id", "alice"), **kw)


def inventory(events: list[KeyEvent], as_of: str = "2026-11-01T00:00:00.000Z",
              split: int | None = None) -> dict[str, Any]:
    """Build via two partials merged in reverse order, to prove order-independence."""
    uid = events[0].key_uid
    assert uid is not None
    k = split if split is not None else len(events) // 2
    a, b = KeyAccumulator(uid), KeyAccumulator(uid)
    for e in events[:k]:
        a.add(e)
    for e in events[k:]:
        b.add(e)
    return build_inventory_record(b.merge(a), as_of)


def states(rec: dict[str, Any]) -> list[str]:
    return [t["to"] + (f"/{t['substate']}" if t["substate"] else "") for t in rec["transitions"]]


def test_aws_full_lifecycle() -> None:
    seq = [
        ev("aws_kms", "2025-01-01T00:00:00.000Z", "create", "CreateKey",
           key_spec="SYMMETRIC_DEFAULT", key_origin="AWS_KMS", key_usage="ENCRYPT_DECRYPT"),
        ev("aws_kms", "2025-02-01T00:00:00.000Z", "disable", "DisableKey"),
        ev("aws_kms", "2025-03-01T00:00:00.000Z", "enable", "EnableKey"),
        ev("aws_kms", "2025-04-01T00:00:00.000Z", "schedule_deletion", "ScheduleKeyDeletion"),
        ev("aws_kms", "2025-04-02T00:00:00.000Z", "cancel_deletion", "CancelKeyDeletion"),
        ev("aws_kms", "2025-04-03T00:00:00.000Z", "enable", "EnableKey"),
        ev("aws_kms", "2025-05-01T00:00:00.000Z", "schedule_deletion", "ScheduleKeyDeletion"),
        ev("aws_kms", "2025-05-31T00:00:00.000Z", "destroy", "DeleteKey"),
    ]
    rec = inventory(seq)
    assert states(rec) == ["active", "suspended/disabled", "active", "deactivated/pending_deletion",
                           "suspended/disabled", "active", "deactivated/pending_deletion",
                           "destroyed"]
    assert rec["state"] == "destroyed"
    assert rec["created_at"] == "2025-01-01T00:00:00.000Z" and rec["created_by"] == "alice"
    # Each transition names the event that caused it.
    assert all(t["event_id"] for t in rec["transitions"])
    assert rec["rotation"]["status"] == "not_evaluated"  # destroyed keys are not due


def test_aws_imported_key_material_lifecycle() -> None:
    seq = [
        ev("aws_kms", "2025-01-01T00:00:00.000Z", "create", "CreateKey", key_origin="EXTERNAL",
           key_spec="SYMMETRIC_DEFAULT"),
        ev("aws_kms", "2025-01-02T00:00:00.000Z", "import", "ImportKeyMaterial"),
        ev("aws_kms", "2025-06-01T00:00:00.000Z", "destroy", "DeleteImportedKeyMaterial"),
        ev("aws_kms", "2025-06-02T00:00:00.000Z", "import", "ImportKeyMaterial"),
    ]
    rec = inventory(seq)
    assert states(rec) == ["pre-activation/pending_import", "active",
                           "deactivated/pending_import", "active"]
    assert rec["rotation"]["eligible"] is False
    assert "EXTERNAL" in rec["rotation"]["eligibility_reason"]


def test_failed_events_do_not_change_state() -> None:
    seq = [
        ev("aws_kms", "2025-01-01T00:00:00.000Z", "create", "CreateKey"),
        ev("aws_kms", "2025-02-01T00:00:00.000Z", "disable", "DisableKey", outcome="failure"),
    ]
    rec = inventory(seq)
    assert rec["state"] == "active" and len(rec["transitions"]) == 1
    assert rec["admins"] == ["alice"]  # the failed disable does not make anyone an admin


def test_azure_soft_delete_recover_and_purge() -> None:
    seq = [
        ev("azure_keyvault", "2025-01-01T00:00:00.000Z", "create", "KeyCreate"),
        ev("azure_keyvault", "2025-02-01T00:00:00.000Z", "disable", "KeyUpdate"),
        ev("azure_keyvault", "2025-03-01T00:00:00.000Z", "schedule_deletion", "KeyDelete"),
        ev("azure_keyvault", "2025-03-02T00:00:00.000Z", "cancel_deletion", "KeyRecover"),
        ev("azure_keyvault", "2025-04-01T00:00:00.000Z", "enable", "KeyUpdate"),
        ev("azure_keyvault", "2025-05-01T00:00:00.000Z", "schedule_deletion", "KeyDelete"),
        ev("azure_keyvault", "2025-05-02T00:00:00.000Z", "purge", "KeyPurge"),
    ]
    rec = inventory(seq)
    # Recover restores the state the key had before deletion (disabled), unlike AWS.
    assert states(rec) == ["active", "suspended/disabled", "deactivated/pending_deletion",
                           "suspended/disabled", "active", "deactivated/pending_deletion",
                           "destroyed/purged"]


def test_azure_restore_from_backup_reactivates() -> None:
    seq = [
        ev("azure_keyvault", "2025-01-01T00:00:00.000Z", "create", "KeyCreate"),
        ev("azure_keyvault", "2025-01-05T00:00:00.000Z", "backup", "KeyBackup"),
        ev("azure_keyvault", "2025-02-01T00:00:00.000Z", "schedule_deletion", "KeyDelete"),
        ev("azure_keyvault", "2025-02-02T00:00:00.000Z", "purge", "KeyPurge"),
        ev("azure_keyvault", "2025-03-01T00:00:00.000Z", "restore", "KeyRestore"),
    ]
    assert inventory(seq)["state"] == "active"


def test_vault_transit_rotation_and_delete() -> None:
    seq = [
        ev("vault_transit", "2024-01-01T00:00:00.000Z", "create", "update transit/keys/k"),
        ev("vault_transit", "2024-07-01T00:00:00.000Z", "rotate", "update transit/keys/k/rotate"),
        ev("vault_transit", "2025-07-01T00:00:00.000Z", "rotate", "update transit/keys/k/rotate"),
        ev("vault_transit", "2025-08-01T00:00:00.000Z", "encrypt", "update transit/encrypt/k",
           user_id="app"),
    ]
    rec = inventory(seq, as_of="2026-11-01T00:00:00.000Z")
    rot = rec["rotation"]
    assert rot["last_rotated_at"] == "2025-07-01T00:00:00.000Z"
    assert rot["rotation_count"] == 2
    assert rot["observed_interval_days"] == pytest.approx((182 + 365) / 2)
    assert rot["cryptoperiod_days"] == 730 and rot["status"] == "within_cryptoperiod"
    assert rec["principals"] == ["alice", "app"] and rec["admins"] == ["alice"]
    assert rec["last_used"]["crypto"] == "2025-08-01T00:00:00.000Z"
    destroyed = inventory([*seq, ev("vault_transit", "2026-01-01T00:00:00.000Z", "destroy",
                                    "delete transit/keys/k")])
    assert destroyed["state"] == "destroyed"


def test_hsm_key_destroy() -> None:
    seq = [
        ev("cloudhsm", "2025-01-01T00:00:00.000Z", "create", "CN_GENERATE_KEY"),
        ev("cloudhsm", "2025-03-01T00:00:00.000Z", "destroy", "CN_DESTROY_OBJECT"),
    ]
    rec = inventory(seq)
    assert states(rec) == ["active", "destroyed"]
    assert rec["rotation"]["eligible"] is False


def test_aws_rotation_overdue_and_enabled_flag() -> None:
    seq = [
        ev("aws_kms", "2024-06-01T00:00:00.000Z", "create", "CreateKey",
           key_spec="SYMMETRIC_DEFAULT", key_origin="AWS_KMS", key_usage="ENCRYPT_DECRYPT"),
        ev("aws_kms", "2024-06-02T00:00:00.000Z", "update_policy", "EnableKeyRotation",
           key_rotation_period_days=365),
        ev("aws_kms", "2024-07-02T00:00:00.000Z", "update_policy", "DisableKeyRotation"),
    ]
    rec = inventory(seq, as_of="2026-06-01T00:00:00.000Z")
    rot = rec["rotation"]
    assert rot["eligible"] is True and rot["enabled"] is False
    assert rot["policy"] == "aws-kms-automatic-rotation-365d" and rot["cryptoperiod_days"] == 365
    assert rot["next_due"] == "2025-06-01T00:00:00.000Z"
    assert rot["overdue_days"] == 365 and rot["status"] == "overdue"


@pytest.mark.parametrize(("spec", "usage", "origin", "store", "eligible"), [
    ("SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", "AWS_KMS", None, True),
    ("RSA_2048", "SIGN_VERIFY", "AWS_KMS", None, False),
    ("ECC_NIST_P256", "SIGN_VERIFY", "AWS_KMS", None, False),
    ("HMAC_256", "GENERATE_VERIFY_MAC", "AWS_KMS", None, False),
    ("SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", "EXTERNAL", None, False),
    ("SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", "AWS_CLOUDHSM", "cks-1234", False),
    ("SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", "EXTERNAL_KEY_STORE", "cks-5678", False),
])
def test_aws_rotation_eligibility_no_false_rotation_disabled(
        spec: str, usage: str, origin: str, store: str | None, eligible: bool) -> None:
    rec = inventory([ev("aws_kms", "2025-01-01T00:00:00.000Z", "create", "CreateKey",
                        key_spec=spec, key_usage=usage, key_origin=origin, key_store=store)])
    assert rec["rotation"]["eligible"] is eligible
    if not eligible:
        assert rec["rotation"]["eligibility_reason"]


def test_key_seen_only_in_use_is_inferred_active_with_lower_bound() -> None:
    seq = [ev("aws_kms", "2023-01-01T00:00:00.000Z", "decrypt", "Decrypt"),
           ev("aws_kms", "2026-01-01T00:00:00.000Z", "decrypt", "Decrypt")]
    rec = inventory(seq, as_of="2026-01-01T00:00:00.000Z")
    assert rec["state"] == "active" and rec["substate"] == "inferred_from_use"
    assert rec["creation_observed"] is False and rec["created_at"] is None
    assert rec["rotation"]["status"] == "overdue_lower_bound"


def test_user_policy_wins_over_defaults() -> None:
    pol = (CryptoperiodPolicy("short", 30, provider="vault_transit"),)
    acc = KeyAccumulator("uid-vault_transit")
    acc.add(ev("vault_transit", "2026-01-01T00:00:00.000Z", "create", "update transit/keys/k"))
    rec = build_inventory_record(acc, "2026-03-02T00:00:00.000Z", pol)
    assert rec["rotation"]["policy"] == "short" and rec["rotation"]["overdue_days"] == 30


def test_compromised_from_config() -> None:
    acc = KeyAccumulator("uid-aws_kms")
    acc.add(ev("aws_kms", "2026-01-01T00:00:00.000Z", "create", "CreateKey"))
    rec = build_inventory_record(acc, "2026-03-01T00:00:00.000Z",
                                 compromised=frozenset({"uid-aws_kms"}))
    assert rec["state"] == "compromised"


def test_merge_is_order_independent() -> None:
    seq = [ev("aws_kms", f"2025-0{i}-01T00:00:00.000Z", op, act) for i, (op, act) in enumerate(
        [("create", "CreateKey"), ("decrypt", "Decrypt"), ("disable", "DisableKey"),
         ("enable", "EnableKey"), ("decrypt", "Decrypt")], start=1)]
    results = {str(inventory(seq, split=k)) for k in range(len(seq) + 1)}
    assert len(results) == 1
