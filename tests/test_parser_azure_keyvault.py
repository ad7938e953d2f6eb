"""Azure Key Vault / Managed HSM parser: key identity, outcomes, principals, containers."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parsers.azure_keyvault import (
    EXTRA_FIELDS,
    AzureKeyVaultParser,
    parse_object_uri,
    parse_resource_id,
)
from parsers.base import ParseError, ParseOptions, ParseOutcome, Quarantined, Skipped
from parsers.detect import detect
from parsers.schema import EXTRA_FIELDS as SCHEMA_EXTRA_FIELDS
from parsers.schema import OPERATIONS, KeyEvent
from tests.golden_util import REAL_LOGS, SAMPLES

AKV_REAL = REAL_LOGS / "azure_keyvault"
AKV_SAMPLES = SAMPLES / "azure_keyvault"

KV = "https://contoso-prod-kv.vault.azure.net"
RID = (
    "/SUBSCRIPTIONS/5F2B8E1C-3D4A-4B6C-8E9F-0A1B2C3D4E5F/RESOURCEGROUPS/RG/PROVIDERS/"
    "MICROSOFT.KEYVAULT/VAULTS/CONTOSO-PROD-KV"
)
OID = "1b7e4c2d-0f3a-4e5b-8c6d-7a8b9c0d1e2f"
APPID = "7e1f0a2b-3c4d-4e5f-8a6b-7c8d9e0f1a2b"


def parse(data: bytes, options: ParseOptions | None = None) -> list[ParseOutcome]:
    return list(AzureKeyVaultParser(options).parse(io.BytesIO(data), "t"))


def one(record: dict[str, Any], options: ParseOptions | None = None) -> ParseOutcome:
    outs = parse(orjson.dumps(record) + b"\n", options)
    assert len(outs) == 1
    return outs[0]


def event(record: dict[str, Any]) -> KeyEvent:
    out = one(record)
    assert isinstance(out, KeyEvent), out
    return out


def audit(op: str = "KeyGet", **over: Any) -> dict[str, Any]:
    """A minimal AuditEvent record; keyword overrides replace top-level fields."""
    rec: dict[str, Any] = {
        "time": "2025-03-04T05:06:07.1234567Z",
        "category": "AuditEvent",
        "operationName": op,
        "resultType": "Success",
        "correlationId": "c0ffee00-0000-4000-8000-000000000001",
        "callerIpAddress": "198.51.100.7",
        "identity": {"claim": {"oid": OID, "upn": "alice@example.com", "appid": APPID}},
        "properties": {
            "id": f"{KV}/keys/Payments-CMK/0123456789abcdef0123456789abcdef",
            "clientInfo": "azsdk-python/1.0",
            "httpStatusCode": 200,
            "requestUri": f"{KV}/keys/Payments-CMK/0123456789abcdef0123456789abcdef"
            "?api-version=7.5",
        },
        "resourceId": RID,
        "resultSignature": "OK",
        "durationMs": "22",
    }
    rec.update(over)
    return rec


# ------------------------------------------------------------------ key identity


@pytest.mark.parametrize(
    ("uri", "uid", "kind", "name", "version"),
    [
        (
            f"{KV}/keys/payments-cmk/0123456789abcdef0123456789abcdef",
            f"{KV}/keys/payments-cmk",
            "key",
            "payments-cmk",
            "0123456789abcdef0123456789abcdef",
        ),
        (f"{KV}/keys/payments-cmk", f"{KV}/keys/payments-cmk", "key", "payments-cmk", None),
        # Upper-case host and name: names are case-insensitive, the uid is lower-case.
        (
            "https://CONTOSO-PROD-KV.vault.azure.net/keys/MyFirstKey",
            f"{KV}/keys/myfirstkey",
            "key",
            "MyFirstKey",
            None,
        ),
        (f"{KV}/deletedkeys/payments-cmk", f"{KV}/keys/payments-cmk", "key", "payments-cmk", None),
        (
            f"{KV}/deletedkeys/payments-cmk/recover?api-version=7.5",
            f"{KV}/keys/payments-cmk",
            "key",
            "payments-cmk",
            None,
        ),
        (
            f"{KV}/keys/payments-cmk/versions?api-version=7.3&maxresults=25",
            f"{KV}/keys/payments-cmk",
            "key",
            "payments-cmk",
            None,
        ),
        (
            f"{KV}/keys/payments-cmk/rotate?api-version=7.5",
            f"{KV}/keys/payments-cmk",
            "key",
            "payments-cmk",
            None,
        ),
        (
            f"{KV}/secrets/db-password/8fbb0accbfbe4ee4b025649ebabae465",
            f"{KV}/secrets/db-password",
            "secret",
            "db-password",
            "8fbb0accbfbe4ee4b025649ebabae465",
        ),
        (
            f"{KV}/deletedsecrets/db-password",
            f"{KV}/secrets/db-password",
            "secret",
            "db-password",
            None,
        ),
        (
            f"{KV}/certificates/api-tls/create?api-version=7.0",
            f"{KV}/certificates/api-tls",
            "certificate",
            "api-tls",
            None,
        ),
        (
            "https://contoso-hsm.managedhsm.azure.net/keys/hsm-root-kek/abcdef0123456789abcdef0123456789",
            "https://contoso-hsm.managedhsm.azure.net/keys/hsm-root-kek",
            "key",
            "hsm-root-kek",
            "abcdef0123456789abcdef0123456789",
        ),
    ],
)
def test_object_uri_resolves_to_canonical_uid(
    uri: str, uid: str, kind: str, name: str, version: str | None
) -> None:
    ref = parse_object_uri(uri)
    assert ref is not None
    assert (ref.uid, ref.kind, ref.name, ref.version) == (uid, kind, name, version)


@pytest.mark.parametrize(
    ("uri", "vault", "kind", "provider"),
    [
        (f"{KV}/", "contoso-prod-kv", None, "azure_keyvault"),
        (f"{KV}/keys?api-version=7.3&maxresults=25", "contoso-prod-kv", "key", "azure_keyvault"),
        (f"{KV}/deletedsecrets?api-version=7.0", "contoso-prod-kv", "secret", "azure_keyvault"),
        (f"{KV}/secrets/restore?api-version=7.0", "contoso-prod-kv", "secret", "azure_keyvault"),
        (f"{KV}/certificates/issuers/digicert", "contoso-prod-kv", None, "azure_keyvault"),
        (
            "https://contoso-hsm.managedhsm.azure.net/backup",
            "contoso-hsm",
            None,
            "azure_managed_hsm",
        ),
        (
            "https://management.azure.com/subscriptions/x/resourceGroups/rg/providers/"
            "Microsoft.KeyVault/vaults/KeyTestInt?api-version=2023-07-01",
            "keytestint",
            None,
            "azure_keyvault",
        ),
    ],
)
def test_vault_level_uris_name_the_vault_but_no_key(
    uri: str, vault: str, kind: str | None, provider: str
) -> None:
    ref = parse_object_uri(uri)
    assert ref is not None
    assert ref.uid is None
    assert (ref.vault, ref.kind, ref.provider) == (vault, kind, provider)


def test_non_vault_uris_are_not_objects() -> None:
    assert parse_object_uri("https://example.com/keys/x") is None
    assert parse_object_uri("not a uri") is None
    assert parse_object_uri("") is None


def test_activity_log_resource_id_names_the_same_key_as_the_data_plane() -> None:
    ref = parse_resource_id(
        "/subscriptions/123/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/"
        "Contoso-Prod-KV/keys/Payments-CMK"
    )
    assert ref is not None
    assert ref.uid == f"{KV}/keys/payments-cmk"
    assert ref.name == "Payments-CMK"
    hsm = parse_resource_id(
        "/subscriptions/1/resourceGroups/rg/providers/Microsoft.KeyVault/managedHSMs/h1/keys/k"
    )
    assert hsm is not None
    assert hsm.uid == "https://h1.managedhsm.azure.net/keys/k"
    assert hsm.provider == "azure_managed_hsm"
    deleted = parse_resource_id(
        "/subscriptions/1/providers/Microsoft.KeyVault/locations/eastus/deletedVaults/v1"
    )
    assert deleted is not None
    assert (deleted.vault, deleted.uid) == ("v1", None)


def test_event_key_fields_from_properties_id() -> None:
    ev = event(audit("KeyGet"))
    assert ev.key_uid == f"{KV}/keys/payments-cmk"
    assert ev.key_name == "Payments-CMK"
    assert ev.key_version == "0123456789abcdef0123456789abcdef"
    assert ev.key_vault == "contoso-prod-kv"
    assert ev.key_provider == "azure_keyvault"
    assert ev.key_kind == "key"
    assert ev.cloud_provider == "azure"
    assert ev.cloud_account_id == ev.key_account == "5f2b8e1c-3d4a-4b6c-8e9f-0a1b2c3d4e5f"


def test_list_operation_without_id_takes_vault_and_kind_from_request_uri() -> None:
    rec = audit(
        "KeyList", properties={"httpStatusCode": 200, "requestUri": f"{KV}/keys?api-version=7.3"}
    )
    ev = event(rec)
    assert ev.operation == "list"
    assert (ev.key_uid, ev.key_kind, ev.key_vault) == (None, "key", "contoso-prod-kv")


def test_vault_operation_has_no_key_uid_but_names_the_vault() -> None:
    rec = audit(
        "VaultPatch",
        properties={
            "id": f"{KV}/",
            "httpStatusCode": 200,
            "requestUri": "https://management.azure.com/x",
        },
    )
    ev = event(rec)
    assert (ev.operation, ev.key_uid, ev.key_vault, ev.key_kind) == (
        "update_policy",
        None,
        "contoso-prod-kv",
        None,
    )
    assert ev.extra["azure.keyvault.object_type"] == "vault"


def test_masked_ids_stay_as_logged() -> None:
    rec = audit(
        resourceId="/SUBSCRIPTIONS/F40A1F1D-F2C6-4444-XXXX/RESOURCEGROUPS/I/PROVIDERS/"
        "MICROSOFT.KEYVAULT/VAULTS/V",
        identity={"claim": {"oid": "d4ba3e84-0444-4841-aaf7-XXXX"}},
    )
    ev = event(rec)
    assert ev.cloud_account_id == "F40A1F1D-F2C6-4444-XXXX"
    assert ev.user_id == "d4ba3e84-0444-4841-aaf7-XXXX"


# ------------------------------------------------------------------ outcome


@pytest.mark.parametrize(
    ("status", "signature", "result_type", "outcome"),
    [
        (403, "Forbidden", "Success", "failure"),  # Key Vault: Success on a 403
        (404, "Not Found", "Success", "failure"),
        (409, "Conflict", "Success", "failure"),
        (200, "Forbidden", "Success", "success"),  # the status code wins (Sekoia VaultGet)
        (202, "Accepted", "Success", "success"),
        (204, None, None, "success"),
        ("403", None, "Success", "failure"),
        (403.0, None, None, "failure"),
        (None, "Forbidden", "Success", "failure"),
        (None, "OK", None, "success"),
        (None, None, "Failed", "failure"),
        (None, None, "Accepted", "success"),
        (None, None, "Succeeded", "success"),
        (None, None, None, "unknown"),
    ],
)
def test_outcome_trusts_http_status_then_signature_then_result_type(
    status: Any, signature: str | None, result_type: str | None, outcome: str
) -> None:
    props: dict[str, Any] = {"id": f"{KV}/keys/k"}
    if status is not None:
        props["httpStatusCode"] = status
    rec = audit("KeyGet", properties=props)
    rec.pop("resultSignature")
    rec.pop("resultType")
    if signature is not None:
        rec["resultSignature"] = signature
    if result_type is not None:
        rec["resultType"] = result_type
    ev = event(rec)
    assert ev.outcome == outcome
    if outcome == "failure" and status is not None:
        assert ev.error_code == str(int(float(status)))


def test_failure_carries_result_description_as_error_message() -> None:
    rec = audit(
        "SecretGet",
        resultDescription="Caller is not authorized.",
        properties={"id": f"{KV}/secrets/s", "httpStatusCode": 403},
    )
    ev = event(rec)
    assert (ev.outcome, ev.error_code, ev.error_message) == (
        "failure",
        "403",
        "Caller is not authorized.",
    )


def test_activity_log_start_is_skipped_and_terminal_event_has_outcome() -> None:
    base = {
        "time": "2026-04-14T02:11:05.0000000Z",
        "resourceId": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/"
        "v1/accessPolicies/add",
        "operationName": "Microsoft.KeyVault/vaults/accessPolicies/write",
        "category": "Administrative",
    }
    start = one({**base, "resultType": "Start", "resultSignature": "Started."})
    assert isinstance(start, Skipped)
    assert start.reason == "activity_start"
    failed = one(
        {
            **base,
            "resultType": "Failure",
            "resultSignature": "Failed.Forbidden",
            "properties": {"statusCode": "Forbidden"},
        }
    )
    assert isinstance(failed, KeyEvent)
    assert (failed.outcome, failed.error_code) == ("failure", "403")
    assert failed.extra["azure.keyvault.access_policy_operation"] == "add"


# ------------------------------------------------------------------ principals


def test_short_claims_user() -> None:
    ev = event(audit())
    assert (ev.user_id, ev.user_name, ev.principal_type) == (OID, "alice@example.com", "user")
    assert ev.extra["azure.keyvault.app_id"] == APPID
    assert (ev.source_ip, ev.source_address) == ("198.51.100.7", "198.51.100.7")


def test_long_uri_claims() -> None:
    rec = audit(
        identity={
            "claim": {
                "http://schemas.microsoft.com/identity/claims/objectidentifier": OID,
                "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn": "bob@example.com",
                "http://schemas.microsoft.com/identity/claims/tenantid": "tenant-1",
                "appid": APPID,
            }
        }
    )
    ev = event(rec)
    assert (ev.user_id, ev.user_name, ev.principal_type) == (OID, "bob@example.com", "user")
    assert ev.principal_account == ev.extra["azure.keyvault.tenant_id"] == "tenant-1"


def test_mixed_short_and_uri_claim_names() -> None:
    rec = audit(
        identity={
            "claim": {
                "oid": OID,
                "appid": APPID,
                "http://schemas.microsoft.com/identity/claims/tenantid": "tenant-2",
            }
        }
    )
    ev = event(rec)
    assert (ev.user_id, ev.principal_account, ev.principal_type) == (
        OID,
        "tenant-2",
        "service_principal",
    )


def test_identity_as_json_string_with_nested_claims_managed_hsm_doc_form() -> None:
    ident = {
        "claim": {
            "appid": APPID,
            "http_schemas_microsoft_com_identity": {"claims": {"objectidentifier": OID}},
            "http_schemas_xmlsoap_org_ws_2005_05_identity": {"claims": {"upn": "erin@example.com"}},
        }
    }
    rec = audit(
        "BackupCreate",
        identity=json.dumps(ident),
        properties={"PoolType": "M-HSM"},
        httpStatusCode=202,
        requestUri="https://h1.managedhsm.azure.net/backup",
        resourceId="/SUBSCRIPTIONS/S/RESOURCEGROUPS/R/PROVIDERS/MICROSOFT.KEYVAULT/MANAGEDHSMS/H1",
        durationMs=488,
    )
    ev = event(rec)
    assert (ev.user_id, ev.user_name, ev.principal_type) == (OID, "erin@example.com", "user")
    assert (ev.operation, ev.outcome, ev.key_provider, ev.key_vault) == (
        "backup",
        "success",
        "azure_managed_hsm",
        "h1",
    )
    assert ev.extra["azure.keyvault.duration_ms"] == 488


def test_service_principal_and_managed_identity() -> None:
    sp = event(audit(identity={"claim": {"oid": OID, "appid": APPID, "idtyp": "app"}}))
    assert (sp.user_id, sp.user_name, sp.principal_type) == (OID, APPID, "service_principal")
    mirid = (
        "/subscriptions/s/resourcegroups/rg/providers/Microsoft.ManagedIdentity/"
        "userAssignedIdentities/id-orders-worker"
    )
    mi = event(
        audit(identity={"claim": {"oid": OID, "appid": APPID, "idtyp": "app", "xms_mirid": mirid}})
    )
    assert (mi.user_id, mi.user_name, mi.principal_type) == (
        OID,
        "id-orders-worker",
        "managed_identity",
    )
    assert mi.extra["azure.keyvault.managed_identity_resource_id"] == mirid


def test_caller_address_that_is_not_an_ip_stays_in_source_address_only() -> None:
    ev = event(audit(callerIpAddress="X.X.X.X"))
    assert (ev.source_ip, ev.source_address) == (None, "X.X.X.X")


# ------------------------------------------------------------------ operations


@pytest.mark.parametrize(
    ("op", "operation"),
    [
        ("KeyCreate", "create"),
        ("KeyImport", "import"),
        ("KeyRotate", "rotate"),
        ("KeyRotationPolicySet", "update_policy"),
        ("KeyDelete", "schedule_deletion"),
        ("KeyPurge", "purge"),
        ("KeyRecover", "cancel_deletion"),
        ("KeyBackup", "backup"),
        ("KeyRestore", "restore"),
        ("KeyEncrypt", "encrypt"),
        ("KeyDecrypt", "decrypt"),
        ("KeyWrap", "wrap"),
        ("KeyUnwrap", "unwrap"),
        ("KeySign", "sign"),
        ("KeyVerify", "verify"),
        ("KeyGet", "describe"),
        ("KeyListVersions", "list"),
        ("KeyRelease", "export"),
        ("SecretGet", "export"),
        ("SecretSet", "create"),
        ("SecretDelete", "schedule_deletion"),
        ("SecretRecover", "cancel_deletion"),
        ("CertificateImport", "import"),
        ("VaultDelete", "schedule_deletion"),
        ("VaultRecover", "cancel_deletion"),
        ("RoleAssignmentCreate", "update_policy"),
        ("SecurityDomainDownload", "backup"),
        ("RestoreCreate", "restore"),
        ("KeyFrobnicate", "admin_other"),
        ("VaultAccessPolicyChangedEventGridNotification", "admin_other"),
    ],
)
def test_operation_mapping(op: str, operation: str) -> None:
    ev = event(audit(op))
    assert ev.operation == operation
    assert ev.action == op
    assert ev.operation in OPERATIONS


def test_key_update_that_disables_is_a_disable() -> None:
    props = {
        "id": f"{KV}/keys/k/0123456789abcdef0123456789abcdef",
        "httpStatusCode": 200,
        "keyProperties": {
            "type": "RSA-HSM",
            "size": 3072,
            "operations": ["wrapKey"],
            "attributes": {"enabled": False, "exp": 1775660989},
        },
    }
    ev = event(audit("KeyUpdate", properties=props))
    assert ev.operation == "disable"
    assert ev.extra["azure.keyvault.enabled"] is False
    assert (ev.key_spec, ev.key_usage, ev.key_expires_at) == (
        "RSA-HSM 3072",
        "wrapKey",
        "2026-04-08T15:09:49.000Z",
    )
    props["keyProperties"]["attributes"]["enabled"] = True  # type: ignore[index]
    ev2 = event(audit("KeyUpdate", properties=props))
    assert ev2.operation == "update_policy"  # the log shows the result, not a re-enable
    assert ev2.extra["azure.keyvault.enabled"] is True


def test_key_import_marks_external_origin() -> None:
    assert event(audit("KeyImport")).key_origin == "EXTERNAL"


@pytest.mark.parametrize(
    ("op", "rid_tail", "operation", "uid"),
    [
        (
            "Microsoft.KeyVault/vaults/keys/purge/action",
            "/keys/MyKey",
            "purge",
            "https://v1.vault.azure.net/keys/mykey",
        ),
        (
            "microsoft.keyvault/vaults/keys/recover/action",
            "/keys/k",
            "cancel_deletion",
            "https://v1.vault.azure.net/keys/k",
        ),
        (
            "Microsoft.KeyVault/vaults/secrets/getSecret/action",
            "/secrets/s",
            "export",
            "https://v1.vault.azure.net/secrets/s",
        ),
        (
            "Microsoft.KeyVault/vaults/keys/write",
            "/keys/k",
            "create",
            "https://v1.vault.azure.net/keys/k",
        ),
        ("MICROSOFT.KEYVAULT/VAULTS/DELETE", "", "schedule_deletion", None),
        ("Microsoft.KeyVault/vaults/write", "", "update_policy", None),
        (
            "Microsoft.KeyVault/vaults/privateEndpointConnections/write",
            "/privateEndpointConnections/p",
            "admin_other",
            None,
        ),
    ],
)
def test_activity_log_operations(op: str, rid_tail: str, operation: str, uid: str | None) -> None:
    rec = {
        "time": "2024-12-17T10:30:00.0000000Z",
        "resourceId": "/subscriptions/12345678-1234-1234-1234-123456789ABC/resourceGroups/rg/"
        "providers/Microsoft.KeyVault/vaults/v1" + rid_tail,
        "operationName": op,
        "category": "Administrative",
        "resultType": "Succeeded",
        "location": "eastus",
    }
    ev = event(rec)
    assert (ev.operation, ev.key_uid, ev.key_vault) == (operation, uid, "v1")
    assert (ev.outcome, ev.cloud_region) == ("success", "eastus")
    assert ev.cloud_account_id == "12345678-1234-1234-1234-123456789abc"


def test_activity_log_on_other_providers_is_skipped() -> None:
    out = one(
        {
            "time": "2024-12-17T10:30:00Z",
            "operationName": "Microsoft.Storage/x/write",
            "resourceId": "/subscriptions/s",
            "resultType": "Success",
        }
    )
    assert isinstance(out, Skipped)
    assert out.reason == "non_keyvault_event"


# ------------------------------------------------------------------ Log Analytics rows


def test_azure_diagnostics_row() -> None:
    row = {
        "TenantId": "workspace-id-not-a-tenant",
        "TimeGenerated": "2026-10-05T02:14:03.123Z",
        "ResourceId": RID,
        "Category": "AuditEvent",
        "SubscriptionId": "S-1",
        "ResourceProvider": "MICROSOFT.KEYVAULT",
        "OperationName": "SecretGet",
        "ResultType": "Success",
        "ResultSignature": "Forbidden",
        "DurationMs": 12,
        "CallerIPAddress": "203.0.113.50",
        "identity_claim_http_schemas_microsoft_com_identity_claims_objectidentifier_g": OID,
        "identity_claim_upn_s": "carol@example.com",
        "identity_claim_appid_g": APPID,
        "id_s": f"{KV}/secrets/db-password",
        "httpStatusCode_d": 403.0,
        "requestUri_s": f"{KV}/secrets/db-password/?api-version=7.5",
        "Type": "AzureDiagnostics",
    }
    ev = event(row)
    assert (ev.operation, ev.outcome, ev.key_uid, ev.key_kind) == (
        "export",
        "failure",
        f"{KV}/secrets/db-password",
        "secret",
    )
    assert (ev.user_id, ev.user_name, ev.principal_type) == (OID, "carol@example.com", "user")
    assert ev.principal_account is None  # TenantId is the Log Analytics workspace
    assert ev.timestamp == "2026-10-05T02:14:03.123Z"
    other = one({**row, "ResourceProvider": "MICROSOFT.NETWORK"})
    assert isinstance(other, Skipped)
    assert other.reason == "non_keyvault_event"


def test_azure_diagnostics_flattened_key_attributes() -> None:
    row = {
        "TimeGenerated": "2026-03-18T11:45:03Z",
        "ResourceProvider": "MICROSOFT.KEYVAULT",
        "OperationName": "KeyUpdate",
        "httpStatusCode_d": 200,
        "id_s": f"{KV}/keys/k",
        "keyProperties_type_s": "RSA",
        "keyProperties_attributes_enabled_b": "False",
    }
    ev = event(row)
    assert (ev.operation, ev.key_spec) == ("disable", "RSA")


def test_azkv_audit_logs_row_with_identity_as_string() -> None:
    row = {
        "TimeGenerated": "2025-08-20T10:31:15.4961234Z",
        "OperationName": "KeyRecover",
        "ResultType": "Success",
        "ResultSignature": "OK",
        "HttpStatusCode": 200,
        "CallerIpAddress": "198.51.100.10",
        "Identity": json.dumps({"claim": {"oid": OID, "upn": "alice@example.com"}}),
        "Id": f"{KV}/deletedkeys/orders-dek-wrap",
        "RequestUri": f"{KV}/deletedkeys/x/recover",
        "_ResourceId": RID.lower(),
        "_SubscriptionId": "5F2B8E1C-3D4A-4B6C-8E9F-0A1B2C3D4E5F",
        "Type": "AZKVAuditLogs",
    }
    ev = event(row)
    assert (ev.operation, ev.key_uid, ev.user_id, ev.outcome) == (
        "cancel_deletion",
        f"{KV}/keys/orders-dek-wrap",
        OID,
        "success",
    )
    assert ev.cloud_account_id == "5f2b8e1c-3d4a-4b6c-8e9f-0a1b2c3d4e5f"


def test_azure_activity_row() -> None:
    row = {
        "TimeGenerated": "2026-04-14T02:18:36.9240000Z",
        "OperationNameValue": "MICROSOFT.KEYVAULT/VAULTS/ACCESSPOLICIES/WRITE",
        "OperationName": "Update Key Vault access policy",
        "ActivityStatusValue": "Success",
        "Caller": "bob@example.com",
        "CallerIpAddress": "198.51.100.11",
        "Claims": json.dumps(
            {"http://schemas.microsoft.com/identity/claims/objectidentifier": OID}
        ),
        "Properties_d": {"statusCode": "OK"},
        "_ResourceId": "/subscriptions/s1/resourcegroups/rg/providers/microsoft.keyvault/"
        "vaults/contoso-prod-kv/accesspolicies/remove",
        "Type": "AzureActivity",
    }
    ev = event(row)
    assert (ev.operation, ev.outcome, ev.key_vault, ev.user_id, ev.user_name) == (
        "update_policy",
        "success",
        "contoso-prod-kv",
        OID,
        "bob@example.com",
    )
    assert ev.extra["azure.keyvault.access_policy_operation"] == "remove"
    started = one({**row, "ActivityStatusValue": "Start"})
    assert isinstance(started, Skipped)
    assert started.reason == "activity_start"


def test_azure_portal_timestamp_form() -> None:
    row = {
        "TimeGenerated [UTC]": "3/1/2025, 10:00:00.123 PM",
        "OperationName": "KeyGet",
        "ResourceProvider": "MICROSOFT.KEYVAULT",
        "id_s": f"{KV}/keys/k",
    }
    assert event(row).timestamp == "2025-03-01T22:00:00.123Z"


# ------------------------------------------------------------------ containers and ids


def test_records_document_offsets_are_record_indexes() -> None:
    doc = {"records": [audit("KeyGet"), audit("KeySign"), [1], audit("KeyWrap")]}
    outs = parse(orjson.dumps(doc))
    assert [o.log_offset if isinstance(o, KeyEvent) else o.offset for o in outs] == [0, 1, 2, 3]
    assert isinstance(outs[2], Quarantined)
    assert outs[2].reason == "not_an_object"


def test_bare_array_and_pretty_printed_single_record() -> None:
    outs = parse(b"\xef\xbb\xbf  " + json.dumps([audit(), audit("KeySign")], indent=2).encode())
    assert [type(o) for o in outs] == [KeyEvent, KeyEvent]
    single = parse(json.dumps({"records": None, **audit()}, indent=2).encode())
    assert len(single) == 1


def test_ndjson_offsets_are_byte_offsets_and_batch_lines_expand() -> None:
    line1 = orjson.dumps(audit("KeyGet"))
    line2 = orjson.dumps({"records": [audit("KeySign"), audit("KeyVerify")]})
    outs = parse(line1 + b"\n\n" + line2 + b"\n")
    assert [o.log_offset for o in outs if isinstance(o, KeyEvent)] == [
        0,
        len(line1) + 2,
        len(line1) + 2,
    ]
    assert [o.action for o in outs if isinstance(o, KeyEvent)] == ["KeyGet", "KeySign", "KeyVerify"]


def test_truncated_document_keeps_the_records_before_the_cut() -> None:
    data = orjson.dumps({"records": [audit(), audit()]})[:-40]
    outs = parse(data)
    assert len(outs) == 2
    assert isinstance(outs[0], KeyEvent)
    assert isinstance(outs[1], Quarantined)
    assert outs[1].reason == "truncated_record"
    assert f"-{len(data)}:" in (outs[1].detail or "")  # the span runs to the end of the data
    garbage = parse(b'[{"operationName":"KeyGet",}]')
    assert [o.reason for o in garbage if isinstance(o, Quarantined)] == ["invalid_json"]


def test_line_delimited_batches_that_do_not_form_one_document_are_read_per_line() -> None:
    batch = orjson.dumps({"records": [audit()]})
    outs = parse(batch + b"\n" + batch + b"\n{broken\n")
    assert [type(o).__name__ for o in outs] == ["KeyEvent", "KeyEvent", "Quarantined"]


def test_quarantine_reasons_per_line() -> None:
    good = orjson.dumps(audit())
    no_time = orjson.dumps({k: v for k, v in audit().items() if k != "time"})
    lines = [
        good[:50],
        b"[1,2]",
        no_time,
        orjson.dumps(audit(time="yesterday")),
        b'{"foo":1}',
        orjson.dumps(audit(operationName=7)),
    ]
    outs = parse(b"\n".join(lines) + b"\n")
    assert [o.reason for o in outs if isinstance(o, Quarantined)] == [
        "truncated_record",
        "not_an_object",
        "missing_field",
        "bad_timestamp",
        "unknown_shape",
        "missing_field",
    ]


def test_overlong_line_is_quarantined() -> None:
    big = orjson.dumps(audit(resultDescription="x" * 5000))
    outs = parse(big + b"\n" + orjson.dumps(audit()) + b"\n", ParseOptions(max_line_bytes=1000))
    assert isinstance(outs[0], Quarantined)
    assert outs[0].reason == "line_too_long"
    assert isinstance(outs[1], KeyEvent)


def test_other_categories_and_metrics_are_skipped() -> None:
    assert [
        o.reason
        for o in parse(
            orjson.dumps(audit(category="AzurePolicyEvaluationDetails"))
            + b"\n"
            + orjson.dumps({"metricName": "ServiceApiHit", "time": "2025-01-01T00:00:00Z"})
            + b"\n"
        )
        if isinstance(o, Skipped)
    ] == ["non_audit_category", "metric_record"]


def test_event_id_is_the_same_whatever_the_container_and_ignores_the_path() -> None:
    rec = audit()
    a = parse(orjson.dumps({"records": [rec]}))[0]
    b = parse(orjson.dumps(rec) + b"\n")[0]
    c = next(iter(AzureKeyVaultParser().parse(io.BytesIO(orjson.dumps([rec])), "other/path")))
    assert isinstance(a, KeyEvent) and isinstance(b, KeyEvent) and isinstance(c, KeyEvent)
    assert a.event_id == b.event_id == c.event_id
    d = event(audit(correlationId="another"))
    assert d.event_id != a.event_id


def test_timestamps_and_duration_string() -> None:
    ev = event(audit())
    assert ev.timestamp == "2025-03-04T05:06:07.123Z"
    assert ev.extra["azure.keyvault.duration_ms"] == 22


def test_original_only_when_asked() -> None:
    assert event(audit()).original is None
    ev = one(audit(), ParseOptions(include_original=True))
    assert isinstance(ev, KeyEvent)
    assert ev.original is not None
    assert orjson.loads(ev.original)["operationName"] == "KeyGet"


def test_extra_fields_are_declared_and_scalar() -> None:
    declared = set(SCHEMA_EXTRA_FIELDS) | set(EXTRA_FIELDS)
    for sample in sorted(AKV_SAMPLES.glob("*")):
        if sample.name == "README.md":
            continue
        for o in parse(sample.read_bytes()):
            if isinstance(o, KeyEvent):
                for k, v in o.extra.items():
                    assert k in declared, k
                    assert k.startswith("azure.keyvault.")
                    assert isinstance(v, (str, int, bool)) or (
                        isinstance(v, list) and all(isinstance(x, str) for x in v)
                    ), (k, v)


# ------------------------------------------------------------------ real logs

# file -> (records_in, events, skipped by reason, quarantined by reason)
REAL_EXPECTED: dict[str, tuple[int, int, dict[str, int], dict[str, int]]] = {
    "azure-security-docs-keyvault.json": (1, 1, {}, {}),
    "azure-security-docs-keyvault.ndjson": (1, 1, {}, {}),
    "azure-security-docs-managedhsm.json": (1, 1, {}, {}),
    "azure-security-docs-managedhsm.ndjson": (1, 1, {}, {}),
    "panther-analysis-activitylog-synthetic.json": (21, 21, {}, {}),
    "panther-analysis-activitylog-synthetic.ndjson": (21, 21, {}, {}),
    "sekoia-intake-formats.json": (32, 32, {}, {}),
    "sekoia-intake-formats.ndjson": (32, 32, {}, {}),
}


def _real(name: str) -> bytes:
    path = AKV_REAL / name
    if not path.exists():
        pytest.skip(f"../shared/real_logs not present: {path}")
    return path.read_bytes()


@pytest.mark.parametrize("name", sorted(REAL_EXPECTED))
def test_real_logs_full_accounting(name: str) -> None:
    outs = parse(_real(name))
    records_in, n_events, skipped, quarantined = REAL_EXPECTED[name]
    events = [o for o in outs if isinstance(o, KeyEvent)]
    got_skipped = Counter(o.reason for o in outs if isinstance(o, Skipped))
    got_quarantined = Counter(o.reason for o in outs if isinstance(o, Quarantined))
    assert len(outs) == records_in
    assert len(events) + sum(got_skipped.values()) + sum(got_quarantined.values()) == records_in
    assert (len(events), dict(got_skipped), dict(got_quarantined)) == (
        n_events,
        skipped,
        quarantined,
    )
    assert detect(_real(name)[:65536], [AzureKeyVaultParser()]) is not None


def test_every_real_azure_file_is_covered() -> None:
    if not AKV_REAL.exists():
        pytest.skip(f"../shared/real_logs not present: {AKV_REAL}")
    assert sorted(p.name for p in AKV_REAL.iterdir() if p.name != "README.md") == sorted(
        REAL_EXPECTED
    )


def test_real_sekoia_quirks() -> None:
    events = [o for o in parse(_real("sekoia-intake-formats.ndjson")) if isinstance(o, KeyEvent)]
    # resultType is Success everywhere; 10 records are 400/403/404/409.
    assert Counter(e.outcome for e in events) == {"success": 22, "failure": 10}
    assert {e.extra["azure.keyvault.result_type"] for e in events} == {"Success"}
    # The VaultGet with resultSignature Forbidden but HTTP 200 is a success.
    forbidden_ok = [
        e
        for e in events
        if e.action == "VaultGet" and e.extra.get("azure.keyvault.result_signature") == "Forbidden"
    ]
    assert [e.outcome for e in forbidden_ok] == ["success"]
    # deletedkeys/MyFirstKey and keys/MyFirstKey are the same key.
    uids = {e.key_uid for e in events if e.action in ("KeyPurge", "KeyGet")}
    assert "https://testpermissionvault.vault.azure.net/keys/myfirstkey" in uids
    # List operations have no id: vault and kind come from requestUri.
    lists = [e for e in events if e.action in ("KeyList", "SecretList", "KeyListDeleted")]
    assert lists and all(e.key_uid is None and e.key_vault and e.key_kind for e in lists)
    # Both claim shapes give an object id and a upn.
    assert all(e.user_id for e in events)
    assert all(e.principal_type in ("user", "service_principal") for e in events)
    # test_event_key_delete and _key_delete_1 are identical: same event id.
    deletes = [e.event_id for e in events if e.action == "KeyDelete"]
    assert len(deletes) == 2 and deletes[0] == deletes[1]


def test_real_json_and_ndjson_pairs_give_the_same_events() -> None:
    for stem in (
        "sekoia-intake-formats",
        "panther-analysis-activitylog-synthetic",
        "azure-security-docs-keyvault",
        "azure-security-docs-managedhsm",
    ):
        a = [o for o in parse(_real(stem + ".json")) if isinstance(o, KeyEvent)]
        b = [o for o in parse(_real(stem + ".ndjson")) if isinstance(o, KeyEvent)]
        strip = {"log_offset": 0}
        assert [_without(e, strip) for e in a] == [_without(e, strip) for e in b], stem


def _without(ev: KeyEvent, fields: dict[str, Any]) -> dict[str, Any]:
    flat = ev.to_flat()
    flat.pop("log.offset")
    return flat


def test_real_managed_hsm_doc_record() -> None:
    (ev,) = parse(_real("azure-security-docs-managedhsm.json"))
    assert isinstance(ev, KeyEvent)
    assert (ev.operation, ev.outcome, ev.key_provider, ev.key_vault) == (
        "backup",
        "success",
        "azure_managed_hsm",
        "<hsm-name>",
    )
    assert (ev.user_id, ev.user_name) == ("<object-id>", "<user-email>")
    assert ev.extra["azure.keyvault.http_status_code"] == 202
    assert ev.timestamp == "2020-08-31T19:52:39.763Z"


def test_real_activity_log_purges_name_keys_like_the_data_plane() -> None:
    events = [
        o
        for o in parse(_real("panther-analysis-activitylog-synthetic.ndjson"))
        if isinstance(o, KeyEvent)
    ]
    purges = sorted(e.key_uid or e.key_vault or "" for e in events if e.operation == "purge")
    assert purges == [
        "https://mykeyvault.vault.azure.net/keys/mykey",
        "https://prodvault.vault.azure.net/keys/encryptionkey",
        "mykeyvault",
        "prodvault",
    ]
    assert sum(1 for e in events if e.user_id is None) == 15  # no identity in 15 of 21


# ------------------------------------------------------------------ format detection


def _sample_files() -> list[Path]:
    return sorted(p for p in AKV_SAMPLES.glob("*") if p.name != "README.md")


@pytest.mark.parametrize("sample", _sample_files(), ids=lambda p: p.name)
def test_detection_picks_this_parser_for_each_sample(sample: Path) -> None:
    assert AzureKeyVaultParser().sniff(sample.read_bytes()[:65536]) >= 90


def _foreign_files() -> list[Path]:
    out: list[Path] = []
    for root in (SAMPLES, REAL_LOGS):
        if not root.exists():
            continue
        for p in sorted(root.rglob("*")):
            if (
                p.is_file()
                and p.suffix != ".gz"
                and p.name not in ("README.md", "PROVENANCE.tsv")
                and "azure_keyvault" not in p.parts
            ):
                out.append(p)
    return out


def test_detection_does_not_claim_other_families() -> None:
    files = _foreign_files()
    if not files:
        pytest.skip("no other families' sample_logs or ../shared/real_logs present")
    parser = AzureKeyVaultParser()
    claimed = [p for p in files if parser.sniff(p.read_bytes()[:65536]) > 0]
    assert claimed == []


def test_sniff_rejects_garbage() -> None:
    p = AzureKeyVaultParser()
    assert p.sniff(b"") == 0
    assert p.sniff(b"\x00\xff\xfe") == 0
    assert p.sniff(b'{"Records":[{"eventSource":"kms.amazonaws.com"}]}') == 0
    assert p.sniff(b'{"time":"x","type":"request","request":{"path":"transit/keys/a"}}') == 0


# ------------------------------------------------------------------ properties

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
FIELD_NAMES = [
    "time",
    "operationName",
    "category",
    "resultType",
    "resultSignature",
    "identity",
    "properties",
    "resourceId",
    "callerIpAddress",
    "durationMs",
    "httpStatusCode",
    "requestUri",
    "clientInfo",
    "correlationId",
    "location",
    "caller",
    "claims",
    "status",
    "subStatus",
    "eventDataId",
    "TimeGenerated",
    "OperationName",
    "Identity",
    "Id",
    "HttpStatusCode",
    "RequestUri",
    "KeyProperties",
    "id_s",
    "httpStatusCode_d",
    "identity_claim_oid_g",
    "ResourceProvider",
    "Category",
    "Type",
    "OperationNameValue",
    "ActivityStatusValue",
    "Properties_d",
    "Claims_d",
    "metricName",
]
field_values = st.one_of(
    json_values,
    st.sampled_from(
        [
            "2025-01-01T00:00:00.1234567Z",
            "KeyGet",
            "KeyUpdate",
            "AuditEvent",
            "Success",
            "Start",
            "Microsoft.KeyVault/vaults/keys/purge/action",
            "Forbidden",
            "AZKVAuditLogs",
            f"{KV}/keys/k/0123456789abcdef0123456789abcdef",
            RID,
            "203.0.113.1",
            '{"claim":{"oid":"x"}}',
            "Failed.Forbidden",
        ]
    ),
    st.fixed_dictionaries(
        {},
        optional={
            "claim": st.dictionaries(
                st.sampled_from(["oid", "upn", "appid", "idtyp", "xms_mirid"]),
                json_values,
                max_size=4,
            ),
            "id": st.sampled_from([f"{KV}/keys/k", f"{KV}/", "x", ""]),
            "httpStatusCode": json_values,
            "keyProperties": json_values,
            "statusCode": json_values,
            "requestbody": st.sampled_from(
                ['{"properties":{"accessPolicies":[{"objectId":1}]}}', "{bad"]
            ),
        },
    ),
)
records = st.dictionaries(st.sampled_from(FIELD_NAMES), field_values, max_size=12)


def _no_internal_errors(outs: list[ParseOutcome]) -> None:
    for o in outs:
        if isinstance(o, Quarantined) and o.detail:
            assert not o.detail.split(":")[0].endswith(("Error", "Exception")), o.detail


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    parser = AzureKeyVaultParser()
    assert 0 <= parser.sniff(data) <= 100
    try:
        outs = list(parser.parse(io.BytesIO(data), "fuzz"))
    except ParseError:
        return
    _no_internal_errors(outs)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_arbitrary_json_documents_never_raise(value: Any) -> None:
    data = json.dumps(value).encode()
    parser = AzureKeyVaultParser()
    parser.sniff(data)
    outs = list(parser.parse(io.BytesIO(data), "fuzz"))
    _no_internal_errors(outs)
    if isinstance(value, list):
        assert len(outs) == len(value)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(records, min_size=1, max_size=5))
def test_record_shaped_json_accounts_every_record(recs: list[dict[str, Any]]) -> None:
    parser = AzureKeyVaultParser()
    as_lines = b"\n".join(json.dumps(r).encode() for r in recs) + b"\n"
    outs = list(parser.parse(io.BytesIO(as_lines), "fuzz"))
    _no_internal_errors(outs)
    assert len(outs) == len(recs)
    for o in outs:
        if isinstance(o, KeyEvent):
            assert o.operation in OPERATIONS
            assert o.outcome in ("success", "failure", "unknown")
    doc = json.dumps({"records": recs}).encode()
    assert len(list(parser.parse(io.BytesIO(doc), "fuzz"))) == len(recs)
