"""AWS CloudTrail parser: key resolution, principals, outcomes, containers, quirks, accounting."""

from __future__ import annotations

import copy
import gzip
import io
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parsers import cloudtrail
from parsers.base import ParseError, ParseOptions, Quarantined, Skipped
from parsers.cloudtrail import CloudTrailParser, _loose_date, policy_summary
from parsers.detect import detect, parse_bytes
from parsers.schema import EXTRA_FIELDS, KeyEvent
from tests.golden_util import REAL_LOGS, SAMPLES, read_input

ACCT = "111122223333"
EXT = "444455556666"
K1 = "1f0e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
K2 = "2a3b4c5d-6e7f-4081-92a3-b4c5d6e7f809"
ARN1 = f"arn:aws:kms:us-east-1:{ACCT}:key/{K1}"
ARN2 = f"arn:aws:kms:us-east-1:{ACCT}:key/{K2}"
ROLE = {
    "type": "AssumedRole",
    "principalId": "AROAEXAMPLE:session-1",
    "arn": f"arn:aws:sts::{ACCT}:assumed-role/app-backend/session-1",
    "accountId": ACCT,
    "accessKeyId": "ASIAEXAMPLE",
    "sessionContext": {
        "sessionIssuer": {
            "type": "Role",
            "arn": f"arn:aws:iam::{ACCT}:role/app-backend",
            "accountId": ACCT,
            "userName": "app-backend",
        }
    },
}


def rec(name: str = "Decrypt", **over: Any) -> dict[str, Any]:
    r: dict[str, Any] = {
        "eventVersion": "1.10",
        "userIdentity": copy.deepcopy(ROLE),
        "eventTime": "2026-03-01T10:00:00Z",
        "eventSource": "kms.amazonaws.com",
        "eventName": name,
        "awsRegion": "us-east-1",
        "sourceIPAddress": "192.0.2.10",
        "userAgent": "aws-cli/2",
        "requestParameters": {},
        "responseElements": None,
        "requestID": "req-1",
        "eventID": f"evt-{name}",
        "readOnly": True,
        "resources": [{"accountId": ACCT, "type": "AWS::KMS::Key", "ARN": ARN1}],
        "eventType": "AwsApiCall",
        "recipientAccountId": ACCT,
    }
    r.update(over)
    return r


def parse(data: bytes, options: ParseOptions | None = None, path: str = "t.json") -> list[Any]:
    return list(CloudTrailParser(options).parse(io.BytesIO(data), path))


def ndjson(*recs: Any) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in recs)


def events(data: bytes, options: ParseOptions | None = None) -> list[KeyEvent]:
    outs = parse(data, options)
    assert all(isinstance(o, KeyEvent) for o in outs), outs
    return outs


def one(r: dict[str, Any], options: ParseOptions | None = None) -> KeyEvent:
    (ev,) = events(ndjson(r), options)
    return ev


# --- key identity ---------------------------------------------------------------------------


def test_full_key_arn_is_the_uid() -> None:
    ev = one(rec("Encrypt", requestParameters={"keyId": ARN2}, resources=[]))
    assert ev.key_uid == ARN2
    assert (ev.key_account, ev.key_region, ev.key_provider, ev.key_kind) == (
        ACCT,
        "us-east-1",
        "aws_kms",
        "key",
    )


def test_bare_key_id_resolves_with_recipient_account_and_region() -> None:
    ev = one(rec("Encrypt", requestParameters={"keyId": K2}, resources=[], awsRegion="eu-west-1"))
    assert ev.key_uid == f"arn:aws:kms:eu-west-1:{ACCT}:key/{K2}"


def test_bare_key_id_without_recipient_uses_user_identity_account() -> None:
    r = rec("Encrypt", requestParameters={"keyId": K2}, resources=[])
    del r["recipientAccountId"]
    assert one(r).key_uid == ARN2


def test_bare_key_id_prefers_matching_resource_arn() -> None:
    # KMS docs: event logged in us-east-1 while the key (per resources[]) lives in us-west-2.
    arn = f"arn:aws:kms:us-west-2:{ACCT}:key/{K2}"
    ev = one(
        rec(
            "ScheduleKeyDeletion",
            requestParameters={"keyId": K2, "pendingWindowInDays": 7},
            resources=[{"type": "AWS::KMS::Key", "ARN": arn}],
        )
    )
    assert ev.key_uid == arn


@pytest.mark.parametrize("key_id", ["mrk-1234abcd12ab34cd56ef1234567890ab", "1"])
def test_non_uuid_key_ids_still_resolve(key_id: str) -> None:
    ev = one(rec("DisableKey", requestParameters={"keyId": key_id}, resources=None))
    assert ev.key_uid == f"arn:aws:kms:us-east-1:{ACCT}:key/{key_id}"


def test_cn_and_govcloud_partitions() -> None:
    ev = one(rec("Encrypt", requestParameters={"keyId": K1}, resources=[], awsRegion="cn-north-1"))
    assert ev.key_uid == f"arn:aws-cn:kms:cn-north-1:{ACCT}:key/{K1}"


def test_alias_remembered_from_create_alias_within_one_parse() -> None:
    create = rec(
        "CreateAlias",
        requestParameters={"aliasName": "alias/app", "targetKeyId": K2},
        resources=[],
        eventID="a1",
    )
    use = rec(
        "GenerateDataKey", requestParameters={"keyId": "alias/app"}, resources=[], eventID="a2"
    )
    use_arn = rec(
        "Encrypt",
        eventID="a3",
        resources=[],
        requestParameters={"keyId": f"arn:aws:kms:us-east-1:{ACCT}:alias/app"},
    )
    created, used, used_arn = events(ndjson(create, use, use_arn))
    assert created.key_uid == used.key_uid == used_arn.key_uid == ARN2
    assert (created.key_alias, used.key_alias, used_arn.key_alias) == ("alias/app",) * 3


def test_update_alias_retargets_and_delete_alias_forgets() -> None:
    outs = events(
        ndjson(
            rec(
                "CreateAlias",
                requestParameters={"aliasName": "alias/x", "targetKeyId": K1},
                resources=[],
                eventID="1",
            ),
            rec(
                "UpdateAlias",
                requestParameters={"aliasName": "alias/x", "targetKeyId": K2},
                resources=[],
                eventID="2",
            ),
            rec("Encrypt", requestParameters={"keyId": "alias/x"}, resources=[], eventID="3"),
            rec(
                "DeleteAlias", requestParameters={"aliasName": "alias/x"}, resources=[], eventID="4"
            ),
            rec("Encrypt", requestParameters={"keyId": "alias/x"}, resources=[], eventID="5"),
        )
    )
    assert [o.key_uid for o in outs] == [
        ARN1,
        ARN2,
        ARN2,
        ARN2,
        f"arn:aws:kms:us-east-1:{ACCT}:alias/x",
    ]


def test_failed_create_alias_is_not_remembered() -> None:
    outs = events(
        ndjson(
            rec(
                "CreateAlias",
                requestParameters={"aliasName": "alias/x", "targetKeyId": K1},
                resources=[],
                eventID="1",
                errorCode="AlreadyExistsException",
            ),
            rec("Encrypt", requestParameters={"keyId": "alias/x"}, resources=[], eventID="2"),
        )
    )
    assert outs[1].key_uid == f"arn:aws:kms:us-east-1:{ACCT}:alias/x"


def test_alias_state_is_per_parse() -> None:
    parse(
        ndjson(
            rec(
                "CreateAlias",
                requestParameters={"aliasName": "alias/x", "targetKeyId": K1},
                resources=[],
            )
        )
    )
    ev = one(rec("Encrypt", requestParameters={"keyId": "alias/x"}, resources=[]))
    assert ev.key_uid == f"arn:aws:kms:us-east-1:{ACCT}:alias/x"


def test_alias_state_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cloudtrail, "_MAX_ALIASES", 2)
    recs = [
        rec(
            "CreateAlias",
            requestParameters={"aliasName": f"alias/a{i}", "targetKeyId": K1},
            resources=[],
            eventID=f"c{i}",
        )
        for i in range(3)
    ]
    recs += [
        rec("Encrypt", requestParameters={"keyId": f"alias/a{i}"}, resources=[], eventID=f"e{i}")
        for i in (0, 2)
    ]
    outs = events(ndjson(*recs))
    assert outs[3].key_uid == f"arn:aws:kms:us-east-1:{ACCT}:alias/a0"  # evicted (oldest)
    assert outs[4].key_uid == ARN1


def test_alias_falls_back_to_resources_then_alias_arn() -> None:
    via_res = one(
        rec(
            "GenerateDataKeyWithoutPlaintext",
            requestParameters={"keyId": "alias/aws/ebs"},
            resources=[{"ARN": ARN2, "accountId": ACCT}],
        )
    )
    assert (via_res.key_uid, via_res.key_alias) == (ARN2, "alias/aws/ebs")
    unresolved = one(rec("DescribeKey", requestParameters={"keyId": "alias/team"}, resources=[]))
    assert unresolved.key_uid == f"arn:aws:kms:us-east-1:{ACCT}:alias/team"
    assert unresolved.key_alias == "alias/team"
    assert (unresolved.key_account, unresolved.key_region) == (ACCT, "us-east-1")


def test_decrypt_without_key_id_uses_resources_including_lowercase_arn() -> None:
    assert one(rec("Decrypt")).key_uid == ARN1
    low = one(rec("Decrypt", resources=[{"accountId": ACCT, "arn": ARN2, "type": "AWS::KMS::Key"}]))
    assert low.key_uid == ARN2


def test_unresolvable_bare_id_keeps_the_reference() -> None:
    r = rec("Encrypt", requestParameters={"keyId": K1}, resources=[])
    del r["recipientAccountId"]
    del r["userIdentity"]
    ev = one(r)
    assert ev.key_uid is None
    assert ev.extra["aws.cloudtrail.key_ref"] == K1


def test_reencrypt_source_and_destination() -> None:
    ev = one(
        rec(
            "ReEncrypt",
            requestParameters={
                "sourceKeyId": K1,
                "destinationKeyId": ARN2,
                "sourceEncryptionContext": {"a": "1"},
                "destinationEncryptionContext": {"b": "2"},
            },
            resources=[],
        )
    )
    assert (ev.key_uid, ev.key_destination_uid) == (ARN1, ARN2)
    assert ev.extra["aws.cloudtrail.encryption_context_keys"] == ["a", "b"]
    # KMS docs: no sourceKeyId, both keys only in resources[].
    ev = one(
        rec(
            "ReEncrypt",
            requestParameters={"destinationKeyId": K2},
            resources=[{"ARN": ARN1}, {"ARN": ARN2}],
        )
    )
    assert (ev.key_uid, ev.key_destination_uid) == (ARN1, ARN2)


def test_create_key_metadata_and_non_iso_creation_date() -> None:
    ev = one(
        rec(
            "CreateKey",
            requestParameters={"keySpec": "RSA_2048", "keyUsage": "SIGN_VERIFY"},
            responseElements={
                "keyMetadata": {
                    "keyId": K2,
                    "arn": ARN2,
                    "creationDate": "Aug 10, 2022, 10:38:27 PM",
                    "keyUsage": "SIGN_VERIFY",
                    "customerMasterKeySpec": "RSA_2048",
                    "origin": "AWS_CLOUDHSM",
                    "customKeyStoreId": "cks-1",
                }
            },
            resources=[],
        )
    )
    assert (ev.operation, ev.operation_class, ev.key_uid) == ("create", "lifecycle", ARN2)
    assert (ev.key_spec, ev.key_usage, ev.key_origin, ev.key_store) == (
        "RSA_2048",
        "SIGN_VERIFY",
        "AWS_CLOUDHSM",
        "cks-1",
    )
    assert ev.extra["aws.cloudtrail.key_creation_date"] == "2022-08-10T22:38:27.000Z"


def test_failed_create_key_has_no_key_but_keeps_request_spec() -> None:
    ev = one(
        rec(
            "CreateKey",
            requestParameters={"keySpec": "HMAC_256", "origin": "EXTERNAL"},
            resources=[],
            errorCode="LimitExceededException",
        )
    )
    assert ev.key_uid is None and ev.outcome == "failure"
    assert (ev.key_spec, ev.key_origin) == ("HMAC_256", "EXTERNAL")


def test_rotate_key_service_event() -> None:
    ev = one(
        rec(
            "RotateKey",
            userIdentity={"accountId": ACCT, "invokedBy": "AWS Internal"},
            eventType="AwsServiceEvent",
            sourceIPAddress="AWS Internal",
            requestParameters=None,
            resources=[],
            serviceEventDetails={"keyId": K1},
        )
    )
    assert (ev.operation, ev.key_uid) == ("rotate", ARN1)
    assert (ev.principal_type, ev.user_id) == ("AWSService", "AWS Internal")
    assert ev.source_ip is None and ev.source_address == "AWS Internal"


def test_replicate_key_targets_the_replica() -> None:
    mrk = "mrk-1234abcd12ab34cd56ef1234567890ab"
    ev = one(
        rec(
            "ReplicateKey",
            requestParameters={"keyId": mrk, "replicaRegion": "eu-west-1"},
            resources=[],
        )
    )
    assert ev.operation == "create"
    assert ev.key_uid == f"arn:aws:kms:eu-west-1:{ACCT}:key/{mrk}"
    assert ev.extra["aws.cloudtrail.primary_key_uid"] == f"arn:aws:kms:us-east-1:{ACCT}:key/{mrk}"


# --- verbs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("verb", "operation"),
    [
        ("Encrypt", "encrypt"),
        ("Decrypt", "decrypt"),
        ("GenerateDataKeyPair", "generate_data_key"),
        ("Sign", "sign"),
        ("VerifyMac", "mac"),
        ("DeriveSharedSecret", "derive"),
        ("GenerateRandom", "admin_other"),
        ("EnableKey", "enable"),
        ("DisableKey", "disable"),
        ("CancelKeyDeletion", "cancel_deletion"),
        ("DeleteKey", "destroy"),
        ("DeleteImportedKeyMaterial", "destroy"),
        ("DeleteExpiredKeyMaterial", "destroy"),
        ("ImportKeyMaterial", "import"),
        ("RotateKeyOnDemand", "rotate"),
        ("EnableKeyRotation", "update_policy"),
        ("PutKeyPolicy", "update_policy"),
        ("CreateGrant", "grant"),
        ("RetireGrant", "revoke_grant"),
        ("RevokeGrant", "revoke_grant"),
        ("ListGrants", "list"),
        ("DescribeKey", "describe"),
        ("GetPublicKey", "describe"),
        ("ConnectCustomKeyStore", "admin_other"),
        ("DescribeCustomKeyStores", "describe"),
        ("ListSomethingNew", "list"),
        ("GetSomethingNew", "describe"),
        ("FrobnicateKey", "admin_other"),
    ],
)
def test_verb_mapping(verb: str, operation: str) -> None:
    ev = one(rec(verb))
    assert (ev.action, ev.operation) == (verb, operation)


def test_schedule_key_deletion_dates() -> None:
    ev = one(
        rec(
            "ScheduleKeyDeletion",
            requestParameters={"keyId": K1, "pendingWindowInDays": 20},
            responseElements={"keyId": ARN1, "deletionDate": "Apr 12, 2021 18:58:30 PM"},
        )
    )
    assert ev.key_deletion_date == "2021-04-12T18:58:30.000Z"  # 24h clock with a stray PM
    assert ev.extra["aws.cloudtrail.pending_window_days"] == 20
    # Replica keys: no deletionDate in the response -> eventTime + window.
    ev = one(
        rec(
            "ScheduleKeyDeletion",
            requestParameters={"keyId": K1, "pendingWindowInDays": 30},
            responseElements={"keyState": "PendingReplicaDeletion"},
        )
    )
    assert ev.key_deletion_date == "2026-03-31T10:00:00.000Z"


@pytest.mark.parametrize(
    ("raw", "iso"),
    [
        ("Aug 10, 2022, 10:38:27 PM", "2022-08-10T22:38:27.000Z"),
        ("Apr 12, 2021 18:58:30 PM", "2021-04-12T18:58:30.000Z"),
        ("Jan 1, 2019 12:00:00 AM", "2019-01-01T00:00:00.000Z"),
        ("Oct 21, 2024, 12:25:29 PM", "2024-10-21T12:25:29.000Z"),
        ("2024-10-21T14:25:29Z", "2024-10-21T14:25:29.000Z"),
        (1735689600, "2025-01-01T00:00:00.000Z"),
        (1735689600123, "2025-01-01T00:00:00.123Z"),
        ("Feb 30, 2024, 1:00:00 PM", None),
        ("not a date", None),
        ("Foo 1, 2024 1:00:00 PM", None),
        (None, None),
        (True, None),
        ("", None),
        (1e300, None),
    ],
)
def test_loose_dates(raw: object, iso: str | None) -> None:
    assert _loose_date(raw) == iso


def test_import_key_material_expiry_and_external_origin() -> None:
    ev = one(
        rec(
            "ImportKeyMaterial",
            requestParameters={
                "keyId": K1,
                "validTo": "Jan 1, 2021 8:00:00 PM",
                "expirationModel": "KEY_MATERIAL_EXPIRES",
            },
        )
    )
    assert (ev.key_origin, ev.key_expires_at) == ("EXTERNAL", "2021-01-01T20:00:00.000Z")
    ev = one(
        rec(
            "ImportKeyMaterial",
            requestParameters={"keyId": K1, "expirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE"},
        )
    )
    assert ev.key_expires_at is None


def test_enable_key_rotation_period() -> None:
    ev = one(rec("EnableKeyRotation", requestParameters={"keyId": K1, "rotationPeriodInDays": 180}))
    assert ev.key_rotation_period_days == 180


@pytest.mark.parametrize(
    ("policy", "principals", "public"),
    [
        ({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "kms:*"}]}, ["*"], True),
        ({"Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}}]}, ["*"], True),
        (
            {"Statement": {"Effect": "Allow", "Principal": {"AWS": ["*", "arn:aws:iam::1:root"]}}},
            ["*", "arn:aws:iam::1:root"],
            True,
        ),
        (
            {
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": "*",
                        "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-1"}},
                    }
                ]
            },
            ["*"],
            False,
        ),
        (
            {
                "Statement": [
                    {"Effect": "Deny", "Principal": "*"},
                    {"Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"}},
                ]
            },
            ["s3.amazonaws.com"],
            False,
        ),
        (
            {"Statement": [{"Effect": "Allow", "NotPrincipal": {"AWS": "arn:aws:iam::1:root"}}]},
            [],
            True,
        ),
    ],
)
def test_policy_summary(policy: dict[str, Any], principals: list[str], public: bool) -> None:
    assert policy_summary(orjson.dumps(policy).decode()) == (principals, public)
    assert policy_summary(policy) == (principals, public)


def test_put_key_policy_event_fields_and_unreadable_policy() -> None:
    pol = orjson.dumps({"Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}}]}).decode()
    ev = one(rec("PutKeyPolicy", requestParameters={"keyId": K1, "policy": pol}))
    assert ev.extra["aws.cloudtrail.policy_public"] is True
    assert ev.extra["aws.cloudtrail.policy_principals"] == ["*"]
    ev = one(rec("PutKeyPolicy", requestParameters={"keyId": K1, "policy": "{not json"}))
    assert "aws.cloudtrail.policy_public" not in ev.extra and ev.key_uid == ARN1


def test_create_grant_fields() -> None:
    ev = one(
        rec(
            "CreateGrant",
            requestParameters={
                "keyId": K1,
                "granteePrincipal": f"arn:aws:iam::{EXT}:role/etl",
                "retiringPrincipal": f"arn:aws:iam::{EXT}:role/etl",
                "operations": ["Decrypt", "GenerateDataKey"],
                "constraints": {"encryptionContextSubset": {"aws:ebs:id": "vol-1"}},
            },
            responseElements={"grantId": "g-1"},
        )
    )
    assert ev.extra["aws.cloudtrail.grantee_principal"] == f"arn:aws:iam::{EXT}:role/etl"
    assert ev.extra["aws.cloudtrail.retiring_principal"] == f"arn:aws:iam::{EXT}:role/etl"
    assert ev.extra["aws.cloudtrail.grant_operations"] == ["Decrypt", "GenerateDataKey"]
    assert ev.extra["aws.cloudtrail.grant_id"] == "g-1"
    assert ev.resource == "vol-1"


def test_custom_key_store_operations_carry_the_store() -> None:
    ev = one(
        rec(
            "CreateCustomKeyStore",
            requestParameters={"customKeyStoreName": "x"},
            responseElements={"customKeyStoreId": "cks-9"},
            resources=None,
        )
    )
    assert (ev.key_uid, ev.key_store, ev.operation) == (None, "cks-9", "admin_other")


# --- outcome, principal, provenance -------------------------------------------------------


def test_outcome_from_error_code() -> None:
    ok = one(rec("Decrypt"))
    assert (ok.outcome, ok.error_code, ok.error_message) == ("success", None, None)
    bad = one(rec("Decrypt", errorCode="AccessDeniedException", errorMessage="not authorized"))
    assert (bad.outcome, bad.error_code, bad.error_message) == (
        "failure",
        "AccessDeniedException",
        "not authorized",
    )


@pytest.mark.parametrize(
    ("identity", "expected"),
    [
        (ROLE, (f"arn:aws:iam::{ACCT}:role/app-backend", "session-1", "AssumedRole", ACCT)),
        (
            {
                "type": "IAMUser",
                "arn": f"arn:aws:iam::{ACCT}:user/alice",
                "accountId": ACCT,
                "userName": "alice",
            },
            (f"arn:aws:iam::{ACCT}:user/alice", "alice", "IAMUser", ACCT),
        ),
        (
            {"type": "Root", "arn": f"arn:aws:iam::{ACCT}:root", "accountId": ACCT},
            (f"arn:aws:iam::{ACCT}:root", "root", "Root", ACCT),
        ),
        (
            {"type": "AWSService", "invokedBy": "s3.amazonaws.com"},
            ("s3.amazonaws.com", "s3.amazonaws.com", "AWSService", None),
        ),
        (
            {"accountId": ACCT, "invokedBy": "AWS Internal"},
            ("AWS Internal", "AWS Internal", "AWSService", ACCT),
        ),
        (
            {"type": "AWSAccount", "principalId": "AROAX:etl", "accountId": EXT},
            (EXT, "AROAX:etl", "AWSAccount", EXT),
        ),
        (
            {
                "type": "FederatedUser",
                "arn": f"arn:aws:sts::{ACCT}:federated-user/bob",
                "accountId": ACCT,
            },
            (f"arn:aws:sts::{ACCT}:federated-user/bob", "bob", "FederatedUser", ACCT),
        ),
        (
            {
                "type": "IdentityCenterUser",
                "accountId": ACCT,
                "onBehalfOf": {
                    "userId": "94482488-3041-7026-18f3-be45837cd0e4",
                    "identityStoreArn": "arn:aws:identitystore::1:identitystore/d-1",
                },
            },
            ("94482488-3041-7026-18f3-be45837cd0e4", None, "IdentityCenterUser", ACCT),
        ),
    ],
)
def test_principals(identity: dict[str, Any], expected: tuple[Any, ...]) -> None:
    ev = one(rec("Decrypt", userIdentity=identity))
    assert (ev.user_id, ev.user_name, ev.principal_type, ev.principal_account) == expected


def test_assumed_role_keeps_session_arn_and_issuer() -> None:
    ev = one(rec("Decrypt"))
    assert ev.extra["aws.cloudtrail.user_arn"] == ROLE["arn"]
    assert ev.extra["aws.cloudtrail.session_issuer_arn"] == f"arn:aws:iam::{ACCT}:role/app-backend"
    assert ev.session_id == "ASIAEXAMPLE"


@pytest.mark.parametrize(
    ("address", "ip"),
    [
        ("192.0.2.10", "192.0.2.10"),
        ("2001:db8::1", "2001:db8::1"),
        ("AWS Internal", None),
        ("kms.amazonaws.com", None),
        ("172.01.01.001", None),
    ],
)
def test_source_address(address: str, ip: str | None) -> None:
    ev = one(rec("Decrypt", sourceIPAddress=address))
    assert (ev.source_address, ev.source_ip) == (address, ip)


def test_event_id_is_stable_across_containers_and_paths() -> None:
    r = rec("Decrypt", sharedEventID="shared-1")
    doc = orjson.dumps({"Records": [r]})
    cw = orjson.dumps(
        {"events": [{"logStreamName": "s", "timestamp": 1, "message": orjson.dumps(r).decode()}]}
    )
    eb = orjson.dumps(
        {
            "version": "0",
            "detail-type": "AWS API Call via CloudTrail",
            "source": "aws.kms",
            "detail": r,
        }
    )
    ids = {events(d)[0].event_id for d in (doc, ndjson(r), cw, eb)}
    ids.add(next(iter(CloudTrailParser().parse(io.BytesIO(doc), "other/path.json"))).event_id)
    assert len(ids) == 1
    assert events(doc)[0].extra["aws.cloudtrail.shared_event_id"] == "shared-1"
    # the same eventID in another recipient account (cross-account copy) is another event
    other = rec("Decrypt", recipientAccountId=EXT)
    assert one(other).event_id not in ids


def test_event_id_without_vendor_id_hashes_the_record() -> None:
    r = rec("Decrypt")
    del r["eventID"]
    a, b = one(r), one(dict(reversed(list(r.items()))))
    assert a.event_id == b.event_id


def test_encryption_context_resource_and_redaction() -> None:
    r = rec(
        "Decrypt",
        requestParameters={
            "encryptionContext": {"aws:s3:arn": "arn:aws:s3:::bucket/obj", "team": "payments"}
        },
    )
    ev = one(r)
    assert ev.resource == "arn:aws:s3:::bucket/obj"
    assert ev.extra["aws.cloudtrail.encryption_context_keys"] == ["aws:s3:arn", "team"]
    assert ev.original is None
    red = one(r, ParseOptions(include_original=True, redact_encryption_context=True))
    assert red.resource is None
    assert red.extra["aws.cloudtrail.encryption_context_keys"] == ["aws:s3:arn", "team"]
    assert red.original is not None and "payments" not in red.original
    assert "REDACTED" in red.original
    full = one(r, ParseOptions(include_original=True))
    assert full.original is not None and "payments" in full.original


def test_panther_quirks() -> None:
    r = rec(
        "DisableKey", eventTime="2025-03-05 19:48:47.000000000", requestParameters={"keyId": "1"}
    )
    del r["eventVersion"]
    ev = one(r)
    assert ev.timestamp == "2025-03-05T19:48:47.000Z"
    assert "aws.cloudtrail.event_version" not in ev.extra
    assert one(rec("Decrypt", eventTime="2024-01-01 00:00:00.000")).timestamp == (
        "2024-01-01T00:00:00.000Z"
    )


def test_elastic_alphabetical_order_and_odd_account_ids() -> None:
    r = rec(
        "DisableKey",
        recipientAccountId="1010101010101",
        requestParameters={"keyId": "arn:aws:kms:us-east-1:1010101010101:key/k"},
    )
    ev = one(dict(sorted(r.items())))
    assert ev.key_account == "1010101010101" and ev.cloud_account_id == "1010101010101"


# --- non-KMS events ------------------------------------------------------------------------


def test_s3_put_object_with_sse_kms_is_an_event_on_the_key() -> None:
    ev = one(
        rec(
            "PutObject",
            eventSource="s3.amazonaws.com",
            resources=None,
            requestParameters={
                "bucketName": "b",
                "key": "k.csv",
                "x-amz-server-side-encryption-aws-kms-key-id": ARN2,
            },
        )
    )
    assert (ev.provider, ev.operation, ev.key_uid, ev.resource) == (
        "s3.amazonaws.com",
        "encrypt",
        ARN2,
        "arn:aws:s3:::b/k.csv",
    )


def test_ebs_create_volume_resolves_alias_seen_earlier() -> None:
    outs = events(
        ndjson(
            rec(
                "CreateAlias",
                requestParameters={"aliasName": "alias/ebs", "targetKeyId": K2},
                resources=[],
                eventID="1",
            ),
            rec(
                "CreateVolume",
                eventSource="ec2.amazonaws.com",
                eventID="2",
                resources=None,
                requestParameters={"size": 8, "encrypted": True, "kmsKeyId": "alias/ebs"},
                responseElements={"volumeId": "vol-1"},
            ),
        )
    )
    assert (outs[1].key_uid, outs[1].resource, outs[1].operation) == (ARN2, "vol-1", "encrypt")


@pytest.mark.parametrize(
    ("source", "verb", "params", "operation"),
    [
        ("secretsmanager.amazonaws.com", "CreateSecret", {"name": "db", "kmsKeyId": K1}, "encrypt"),
        (
            "rds.amazonaws.com",
            "CreateDBInstance",
            {"dBInstanceIdentifier": "db1", "kmsKeyId": ARN1},
            "encrypt",
        ),
        (
            "s3.amazonaws.com",
            "PutBucketEncryption",
            {
                "bucketName": "b",
                "ServerSideEncryptionConfiguration": {
                    "rules": [{"ApplyServerSideEncryptionByDefault": {"KMSMasterKeyID": ARN1}}]
                },
            },
            "admin_other",
        ),
        ("ec2.amazonaws.com", "ModifyEbsDefaultKmsKeyId", {"KmsKeyId": ARN1}, "admin_other"),
    ],
)
def test_other_services_naming_a_key(
    source: str, verb: str, params: dict[str, Any], operation: str
) -> None:
    ev = one(rec(verb, eventSource=source, requestParameters=params, resources=None))
    assert (ev.key_uid, ev.operation, ev.provider) == (ARN1, operation, source)


def test_out_of_scope_records_are_skipped() -> None:
    insight = {
        "eventVersion": "1.07",
        "eventTime": "2019-11-14T00:51:00Z",
        "eventType": "AwsCloudTrailInsight",
        "insightDetails": {"state": "Start"},
    }
    outs = parse(
        ndjson(
            rec("CreateUser", eventSource="iam.amazonaws.com"),
            insight,
            rec(
                "CreateVolume",
                eventSource="ec2.amazonaws.com",
                requestParameters={"encrypted": True},
            ),
        )
    )
    assert [o.reason for o in outs] == ["non_kms_event", "insight_event", "non_kms_event"]
    assert all(isinstance(o, Skipped) for o in outs)


# --- containers and framing -----------------------------------------------------------------


def test_records_document_offsets_are_record_indexes() -> None:
    doc = orjson.dumps(
        {"Records": [rec("Encrypt", eventID="1"), rec("Decrypt", eventID="2")]},
        option=orjson.OPT_INDENT_2,
    )
    assert [o.log_offset for o in parse(doc)] == [0, 1]
    assert [o.log_file_path for o in parse(doc)] == ["t.json", "t.json"]


def test_ndjson_offsets_are_byte_offsets_and_records_lines_expand() -> None:
    a = orjson.dumps(rec("Encrypt", eventID="1"))
    b = orjson.dumps({"Records": [rec("Decrypt", eventID="2"), rec("Sign", eventID="3")]})
    c = orjson.dumps(rec("Verify", eventID="4"))
    data = a + b"\n" + b + b"\n\n" + c + b"\n"
    outs = parse(data)
    assert [o.action for o in outs] == ["Encrypt", "Decrypt", "Sign", "Verify"]
    assert [o.log_offset for o in outs] == [0, len(a) + 1, len(a) + 1, len(a) + len(b) + 3]


def test_cloudwatch_exports_and_subscription_payloads() -> None:
    r1, r2 = rec("Encrypt", eventID="1"), rec("Decrypt", eventID="2")
    sub = {
        "messageType": "DATA_MESSAGE",
        "logGroup": "g",
        "logStream": "s",
        "logEvents": [
            {"id": "1", "timestamp": 1, "message": orjson.dumps(r1).decode()},
            {"id": "2", "timestamp": 2, "message": r2},
        ],
    }
    outs = events(orjson.dumps(sub))
    assert [(o.action, o.log_offset) for o in outs] == [("Encrypt", 0), ("Decrypt", 1)]
    assert outs[0].extra["aws.cloudtrail.log_group"] == "g"
    assert outs[0].extra["aws.cloudtrail.log_stream"] == "s"
    control = {
        "messageType": "CONTROL_MESSAGE",
        "logEvents": [
            {"id": "", "timestamp": 1, "message": "CWL CONTROL MESSAGE: Checking health"}
        ],
    }
    (skip,) = parse(orjson.dumps(control))
    assert isinstance(skip, Skipped) and skip.reason == "cloudwatch_control_message"
    line = orjson.dumps(
        {"logStreamName": "x", "timestamp": 1, "message": orjson.dumps(r1).decode()}
    )
    assert events(line + b"\n" + line + b"\n")[0].extra["aws.cloudtrail.log_stream"] == "x"


def test_concatenated_payloads_on_one_line_get_their_own_offsets() -> None:
    p1 = orjson.dumps(
        {
            "messageType": "DATA_MESSAGE",
            "logEvents": [
                {
                    "id": "1",
                    "timestamp": 1,
                    "message": orjson.dumps(rec("Encrypt", eventID="1")).decode(),
                }
            ],
        }
    )
    p2 = orjson.dumps(
        {
            "messageType": "DATA_MESSAGE",
            "logEvents": [
                {
                    "id": "2",
                    "timestamp": 2,
                    "message": orjson.dumps(rec("Decrypt", eventID="é")).decode(),
                }
            ],
        }
    )
    outs = events(p1 + p2 + b"\n" + p1 + b"\n")
    assert [o.log_offset for o in outs] == [0, len(p1), len(p1) + len(p2) + 1]
    outs = parse(p1 + b'{"broken":' + b"\n")
    assert isinstance(outs[0], KeyEvent)
    assert isinstance(outs[1], Quarantined) and outs[1].offset == len(p1)


def test_eventbridge_envelopes() -> None:
    r = rec(
        "RotateKey",
        eventType="AwsServiceEvent",
        serviceEventDetails={"keyId": K1},
        userIdentity={"accountId": ACCT, "invokedBy": "AWS Internal"},
    )
    eb = {
        "version": "0",
        "detail-type": "AWS Service Event via CloudTrail",
        "source": "aws.kms",
        "detail": r,
    }
    native = {
        "version": "0",
        "detail-type": "KMS CMK Rotation",
        "source": "aws.kms",
        "detail": {"key-id": K1},
    }
    broken = {"version": "0", "detail-type": "AWS API Call via CloudTrail", "detail": "x"}
    outs = parse(ndjson(eb, native, broken))
    assert isinstance(outs[0], KeyEvent) and outs[0].operation == "rotate"
    assert isinstance(outs[1], Skipped) and outs[1].reason == "not_cloudtrail_event"
    assert isinstance(outs[2], Quarantined) and outs[2].reason == "unknown_shape"


def test_top_level_array_and_digest_files() -> None:
    outs = parse(orjson.dumps([rec("Encrypt", eventID="1"), 5, {"Records": []}]))
    assert isinstance(outs[0], KeyEvent)
    assert [getattr(o, "reason", None) for o in outs[1:]] == ["not_an_object", "unknown_shape"]
    digest = {"awsAccountId": ACCT, "digestStartTime": "2026-01-01T00:00:00Z", "logFiles": []}
    (skip,) = parse(orjson.dumps(digest))
    assert isinstance(skip, Skipped) and skip.reason == "digest_file"


def _reasons(outs: list[Any]) -> list[str]:
    return [o.reason for o in outs if isinstance(o, Quarantined)]


def test_quarantine_reasons() -> None:
    no_time = rec("Decrypt")
    del no_time["eventTime"]
    no_name = rec("Decrypt")
    del no_name["eventName"]
    lines = [
        orjson.dumps(rec("ListKeys")),
        b'{"eventName":"Decrypt",}',
        orjson.dumps(no_time),
        b"garbage \x00\xff line",
        b"[1, 2]",
        orjson.dumps(rec("Decrypt", eventTime="yesterday")),
        orjson.dumps(rec("Decrypt", eventTime=1700000000)),
        orjson.dumps(no_name),
        b'{"eventVersion":"1.08","userIdentity":{"type":"IAMUser"',
        orjson.dumps({"Records": {"not": "a list"}}),
        orjson.dumps({"message": "not json", "timestamp": 1}),
    ]
    outs = parse(b"\n".join(lines) + b"\n")
    assert len(outs) == len(lines)
    assert _reasons(outs) == [
        "invalid_json",
        "missing_field",
        "invalid_json",
        "not_an_object",
        "bad_timestamp",
        "bad_timestamp",
        "missing_field",
        "truncated_record",
        "unknown_shape",
        "invalid_json",
    ]
    q = [o for o in outs if isinstance(o, Quarantined)]
    assert q[1].detail == "eventTime" and q[6].detail == "eventName"
    assert all(o.dataset == "aws.cloudtrail" and o.excerpt for o in q)


def test_over_long_line_is_quarantined_and_framing_continues() -> None:
    data = (
        ndjson(rec("Encrypt", eventID="1"))
        + b'{"x":"'
        + b"a" * 5000
        + b'"}\n'
        + ndjson(rec("Decrypt", eventID="2"))
    )
    outs = parse(data, ParseOptions(max_line_bytes=2048))
    assert [type(o).__name__ for o in outs] == ["KeyEvent", "Quarantined", "KeyEvent"]
    assert outs[1].reason == "line_too_long"


def test_corrupt_s3_object_is_one_quarantined_record() -> None:
    doc = orjson.dumps({"Records": [rec("Encrypt"), rec("Decrypt")]})
    outs = parse(doc[: len(doc) // 2])
    assert _reasons(outs) == ["truncated_record"] and len(outs) == 1


def test_deeply_nested_records_are_accounted() -> None:
    # orjson reads 600 levels but refuses to write more than 254: ids/excerpts must not crash.
    deep = b"[" * 600 + b"]" * 600
    no_id = rec("Decrypt", requestParameters={"encryptionContext": {"a": "b"}, "deep": "@"})
    del no_id["eventID"]
    no_time = rec("Decrypt", junk="@")
    del no_time["eventTime"]
    data = b"".join(
        orjson.dumps(r).replace(b'"@"', deep) + b"\n" for r in (rec("Encrypt"), no_id, no_time)
    )
    outs = parse(data, ParseOptions(include_original=True))
    assert [type(o).__name__ for o in outs] == ["KeyEvent", "KeyEvent", "Quarantined"]
    assert outs[1].event_id and outs[1].original


def test_empty_and_blank_files_have_no_records() -> None:
    assert parse(b"") == [] and parse(b"  \n\n") == [] and parse(b'{"Records":[]}') == []


def test_gzip_sample_is_present_and_matches_plain_parse() -> None:
    gz = sorted((SAMPLES / "aws_cloudtrail").glob("*.json.gz"))
    assert gz, "sample_logs/aws_cloudtrail must contain a .json.gz S3 object"
    data = gzip.decompress(gz[0].read_bytes())
    assert sum(isinstance(o, KeyEvent) for o in parse(data)) > 0


def test_parse_is_deterministic() -> None:
    data = read_input(SAMPLES / "aws_cloudtrail" / "ndjson-2026.ndjson")
    assert [o.to_flat() if isinstance(o, KeyEvent) else o for o in parse(data)] == [
        o.to_flat() if isinstance(o, KeyEvent) else o for o in parse(data)
    ]


def test_extra_fields_are_declared() -> None:
    declared = set(EXTRA_FIELDS) | set(cloudtrail.EXTRA_FIELDS)
    seen: set[str] = set()
    for path in _ct_samples():
        for o in parse(read_input(path)):
            if isinstance(o, KeyEvent):
                seen.update(o.extra)
                for v in o.extra.values():
                    assert isinstance(v, str | int | bool) or (
                        isinstance(v, list) and all(isinstance(x, str) for x in v)
                    )
    assert seen <= declared, seen - declared
    assert all(k.startswith("aws.cloudtrail.") for k in cloudtrail.EXTRA_FIELDS)


# --- real public logs ------------------------------------------------------------------------

CT_REAL = REAL_LOGS / "cloudtrail"
_DEV_GUIDE = (46, {"non_kms_event": 2}, {})
_USER_GUIDE = (1, {"non_kms_event": 6}, {})
_PANTHER = (7, {"non_kms_event": 12}, {})
REAL_EXPECTED: dict[str, tuple[int, dict[str, int], dict[str, int]]] = {
    "aws-cloudhsm-user-guide.json": (0, {"non_kms_event": 1}, {}),
    "aws-cloudhsm-user-guide.ndjson": (0, {"non_kms_event": 1}, {}),
    "aws-cloudtrail-user-guide-insights.json": (0, {"insight_event": 2}, {}),
    "aws-cloudtrail-user-guide-insights.ndjson": (0, {"insight_event": 2}, {}),
    "aws-cloudtrail-user-guide.json": _USER_GUIDE,
    "aws-cloudtrail-user-guide.ndjson": _USER_GUIDE,
    "aws-kms-developer-guide.json": _DEV_GUIDE,
    "aws-kms-developer-guide.json.gz": _DEV_GUIDE,
    "aws-kms-developer-guide.ndjson": _DEV_GUIDE,
    "elastic-integrations-aws-cloudtrail.json": (2, {}, {}),
    "elastic-integrations-aws-cloudtrail.ndjson": (2, {}, {}),
    # lines 1-5: invalid JSON as published; line 6 is one {"Records":[...]} line holding one
    # IAM CreateRole record (not KMS) -> counted as that record, skipped.
    "malformed-from-docs.ndjson": (0, {"non_kms_event": 1}, {"invalid_json": 5}),
    "panther-analysis-rule-tests.json": _PANTHER,
    "panther-analysis-rule-tests.ndjson": _PANTHER,
}


def _real_files() -> list[Path]:
    if not CT_REAL.is_dir():
        pytest.skip(f"../shared/real_logs not present: {CT_REAL} (public CloudTrail samples)")
    return sorted(p for p in CT_REAL.iterdir() if p.is_file())


def test_real_logs_full_accounting_with_exact_counts() -> None:
    files = _real_files()
    assert {p.name for p in files} == set(REAL_EXPECTED), "real_logs/cloudtrail changed"
    for path in files:
        data = read_input(path)
        dataset, outs = parse_bytes(data, path.name)
        assert dataset == "aws.cloudtrail", path.name
        n_events = sum(isinstance(o, KeyEvent) for o in outs)
        skipped = Counter(o.reason for o in outs if isinstance(o, Skipped))
        quarantined = Counter(o.reason for o in outs if isinstance(o, Quarantined))
        assert len(outs) == n_events + sum(skipped.values()) + sum(quarantined.values())
        assert (n_events, dict(skipped), dict(quarantined)) == REAL_EXPECTED[path.name], path.name


def test_real_logs_json_and_ndjson_pairs_agree() -> None:
    _real_files()
    for nd in sorted(CT_REAL.glob("*.ndjson")):
        js = nd.with_suffix(".json")
        if not js.exists():
            continue
        a = [o.to_flat() for o in parse(read_input(js)) if isinstance(o, KeyEvent)]
        b = [o.to_flat() for o in parse(read_input(nd)) if isinstance(o, KeyEvent)]
        for x, y in zip(a, b, strict=True):
            x.pop("log.offset"), y.pop("log.offset"), x.pop("log.file.path"), y.pop("log.file.path")
        assert a == b, nd.name


def test_real_logs_known_values() -> None:
    _real_files()
    dev = [
        o
        for o in parse(read_input(CT_REAL / "aws-kms-developer-guide.ndjson"))
        if isinstance(o, KeyEvent)
    ]
    by_action = {}
    for ev in dev:
        by_action.setdefault(ev.action, ev)
    assert by_action["CreateKey"].key_origin == "EXTERNAL"
    assert by_action["ScheduleKeyDeletion"].key_deletion_date == "2021-04-12T18:58:30.000Z"
    assert by_action["DeleteKey"].principal_type == "AWSService"
    reenc = by_action["ReEncrypt"]
    assert reenc.key_uid.endswith("1234abcd-12ab-34cd-56ef-1234567890ab")  # type: ignore[union-attr]
    assert reenc.key_destination_uid.endswith("0987dcba-09fe-87dc-65ba-ab0987654321")  # type: ignore[union-attr]
    assert by_action["GenerateRandom"].key_uid is None
    panther = [
        o
        for o in parse(read_input(CT_REAL / "panther-analysis-rule-tests.ndjson"))
        if isinstance(o, KeyEvent)
    ]
    assert panther[0].key_uid == "arn:aws:kms:us-west-2:123456789012:key/1"
    public = [
        o.extra.get("aws.cloudtrail.policy_public") for o in panther if o.action == "PutKeyPolicy"
    ]
    assert public == [True, False]  # the second one's '*' statements carry Conditions


# --- detection ------------------------------------------------------------------------------


def _ct_samples() -> list[Path]:
    return sorted(
        p for p in (SAMPLES / "aws_cloudtrail").iterdir() if p.is_file() and p.name != "README.md"
    )


@pytest.mark.parametrize("sample", _ct_samples(), ids=lambda p: p.name)
def test_detection_picks_cloudtrail_for_every_sample(sample: Path) -> None:
    parser = detect(read_input(sample)[:65536])
    assert parser is not None and parser.id == "aws_cloudtrail"


def _other_family_files() -> list[Path]:
    found = [
        p
        for p in SAMPLES.rglob("*")
        if p.is_file() and p.name != "README.md" and "aws_cloudtrail" not in p.parts
    ]
    for family in ("azure_keyvault", "vault", "hsm"):
        d = REAL_LOGS / family
        if d.is_dir():
            found += [p for p in d.iterdir() if p.is_file()]
    return sorted(found)


def test_detection_does_not_claim_other_families() -> None:
    files = _other_family_files()
    if not files:
        pytest.skip("no other-family sample_logs or ../shared/real_logs files present yet")
    parser = CloudTrailParser()
    claimed = [p for p in files if parser.sniff(read_input(p)[:65536]) > 0]
    assert claimed == []


# --- properties ------------------------------------------------------------------------------

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
_fields = st.sampled_from(
    [
        "eventName",
        "eventSource",
        "eventTime",
        "requestParameters",
        "responseElements",
        "userIdentity",
        "resources",
        "recipientAccountId",
        "awsRegion",
        "errorCode",
        "eventID",
        "serviceEventDetails",
        "sourceIPAddress",
        "readOnly",
        "tlsDetails",
        "eventType",
    ]
)
_ct_like = st.fixed_dictionaries(
    {
        "eventSource": st.sampled_from(["kms.amazonaws.com", "s3.amazonaws.com"]) | _json,
        "eventName": st.sampled_from([*sorted(cloudtrail._KMS_OPERATION), "PutObject"]) | _json,
        "eventTime": st.just("2026-01-01T00:00:00Z") | _json,
    },
    optional={
        "requestParameters": _json
        | st.dictionaries(
            st.sampled_from(
                [
                    "keyId",
                    "policy",
                    "encryptionContext",
                    "aliasName",
                    "targetKeyId",
                    "sourceKeyId",
                    "destinationKeyId",
                    "kmsKeyId",
                    "operations",
                    "pendingWindowInDays",
                    "validTo",
                    "grantId",
                ]
            ),
            _json,
        ),
        "userIdentity": _json | st.dictionaries(_fields, _json),
        "resources": _json,
        "responseElements": _json,
        "recipientAccountId": _json,
        "awsRegion": _json,
        "errorCode": _json,
        "eventID": _json,
        "serviceEventDetails": _json,
        "readOnly": _json,
        "tlsDetails": _json,
    },
)
_settings = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _drain(data: bytes) -> list[Any]:
    try:
        return parse(data, ParseOptions(include_original=True, redact_encryption_context=True))
    except ParseError:
        return []


@_settings
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    score = CloudTrailParser().sniff(data)
    assert 0 <= score <= 100
    for o in _drain(data):
        assert isinstance(o, KeyEvent | Skipped | Quarantined)


@_settings
@given(_json)
def test_arbitrary_json_document_never_raises(value: Any) -> None:
    data = orjson.dumps(value)
    CloudTrailParser().sniff(data)
    for o in _drain(data):
        assert isinstance(o, KeyEvent | Skipped | Quarantined)


@_settings
@given(st.lists(_ct_like, min_size=1, max_size=5))
def test_cloudtrail_shaped_lines_yield_one_outcome_each(recs: list[dict[str, Any]]) -> None:
    # Two or more lines: NDJSON framing; every line is one record, whatever its field types.
    data = ndjson(
        *recs,
        {
            "eventName": "ListKeys",
            "eventSource": "kms.amazonaws.com",
            "eventTime": "2026-01-01T00:00:00Z",
        },
    )
    outs = parse(data)
    assert len(outs) == len(recs) + 1
    for o in outs:
        if isinstance(o, KeyEvent):
            assert o.timestamp.endswith("Z") and o.operation in cloudtrail.OPERATION_CLASS


@_settings
@given(st.lists(_ct_like, max_size=5))
def test_records_documents_yield_one_outcome_per_record(recs: list[dict[str, Any]]) -> None:
    assert len(parse(orjson.dumps({"Records": recs}))) == len(recs)
