"""AWS CloudTrail -> KeyEvent: every AWS KMS API call and service event, plus non-KMS events
that name a KMS key (S3 SSE-KMS, EBS, RDS, Secrets Manager, ...).

Containers (detected by content, never by file name):

* S3 delivery object ``{"Records": [...]}`` (``.json``; ``.json.gz`` is decompressed by the
  pipeline before the parser sees it), pretty-printed or compact. A top-level JSON array of
  events is accepted too.
* NDJSON: one CloudTrail event per line. A line may itself be a container (a whole
  ``{"Records": [...]}`` object, a CloudWatch subscription payload, an EventBridge envelope or
  a CloudWatch log event): it is expanded and EACH contained record is one record, all of
  them carrying the byte offset of that line. Several JSON objects concatenated on one line
  without a separator (Firehose delivery of CloudWatch subscription payloads) are split, each
  at its own byte offset.
* CloudWatch Logs: ``aws logs filter-log-events`` / ``get-log-events`` output
  ``{"events": [{"logStreamName", "timestamp", "message": "<event JSON>"}]}``, the
  subscription-filter payload ``{"messageType": "DATA_MESSAGE", "logGroup", "logStream",
  "logEvents": [...]}`` (CONTROL_MESSAGE items are skipped as ``cloudwatch_control_message``),
  and single log-event objects per line. ``message`` may be a JSON string or an object.
* EventBridge envelopes ``{"detail-type": "AWS API Call via CloudTrail" | "AWS Service Event
  via CloudTrail" | ..., "detail": {...event...}}``; envelopes whose detail-type is not a
  CloudTrail one (e.g. KMS's own "KMS CMK Rotation") are skipped as ``not_cloudtrail_event``.
* CloudTrail digest files (``digestStartTime`` + ``logFiles``) sit next to log files in S3;
  they are one record, skipped as ``digest_file``.

``log.offset``: for a file that is ONE JSON document (S3 object, CloudWatch export, one
envelope) it is the index of the record inside the document's record list (0 for a single
record); for line formats it is the byte offset of the line in the decompressed stream.
A file that is neither valid NDJSON nor one valid JSON document is read line by line, so a
corrupt S3 object becomes one quarantined record (``invalid_json`` / ``truncated_record``).

Decisions where CloudTrail or the brief is silent:

* ``GenerateRandom`` uses no key: it stays an event (operation ``admin_other``, no key uid) so
  the principal's KMS activity is complete; it changes no inventory entry. The same holds for
  custom key store operations (``keytrail.key.store`` carries the store id) and for
  ``List*`` calls without a key.
* Unresolved aliases: ``alias/x`` resolves through CreateAlias/UpdateAlias seen earlier in the
  same parse (bounded, per-parse state; aliases resolved through ``resources[]`` are learned
  too), else through ``resources[]`` (type ``AWS::KMS::Key``), else the uid is the alias ARN
  ``arn:aws:kms:<region>:<account>:alias/<name>`` and ``keytrail.key.alias`` keeps the name.
* Bare key ids (UUID, ``mrk-...``, Panther's ``"1"``) prefer the matching ``resources[]`` ARN
  (it carries the key's real region: the docs show a us-east-1 event on a us-west-2 key),
  else ``arn:<partition>:kms:<awsRegion>:<recipientAccountId|userIdentity.accountId>:key/<id>``.
  Account ids are kept verbatim (Elastic's 13/9-digit ids included).
* Key identity per verb: CreateKey -> ``responseElements.keyMetadata.arn``; ReEncrypt ->
  ``sourceKeyId`` (else the ``resources[]`` key that is not the destination) and
  ``destinationKeyId`` -> ``keytrail.key.destination_uid``; RotateKey /
  DeleteExpiredKeyMaterial service events -> ``serviceEventDetails.keyId``; DeleteKey and
  keyless Decrypt/RetireGrant -> ``resources[]``; ReplicateKey -> the replica (``create``),
  the primary in ``aws.cloudtrail.primary_key_uid``.
* Lifecycle hints: ImportKeyMaterial / GetParametersForImport / DeleteImportedKeyMaterial
  imply ``keytrail.key.origin = EXTERNAL``; ImportKeyMaterial ``validTo`` ->
  ``keytrail.key.expires_at`` (unless KEY_MATERIAL_DOES_NOT_EXPIRE). ScheduleKeyDeletion
  without ``deletionDate`` (replica keys) gets eventTime + pendingWindowInDays.
  EnableKeyRotation / DisableKeyRotation are ``update_policy`` (key configuration);
  RotateKey and RotateKeyOnDemand are ``rotate``.
* Non-ISO dates in responses (``Aug 10, 2022, 10:38:27 PM``, ``Apr 12, 2021 18:58:30 PM`` with
  a 24-hour clock plus PM, epoch numbers) are parsed as UTC; unparseable ones are dropped,
  never fatal.
* Key policies (PutKeyPolicy, CreateKey ``policy``; a JSON string or an object):
  ``aws.cloudtrail.policy_principals`` lists the principals of ``Allow`` statements;
  ``policy_public`` is true when an ``Allow`` statement has Principal ``*`` / ``{"AWS": "*"}``
  (or uses NotPrincipal) with no Condition at all. Any Condition counts as restricting.
* Principals: AssumedRole -> ``user.id`` = the role ARN (sessionIssuer), ``user.name`` = the
  session name, the session ARN in ``aws.cloudtrail.user_arn``; AWSService and type-less
  service identities (``{"accountId", "invokedBy": "AWS Internal"}``) -> type ``AWSService``,
  ``user.id`` = invokedBy; AWSAccount -> ``user.id`` = the calling account id (CloudTrail does
  not reveal who inside it), ``user.name`` = principalId; IdentityCenterUser ->
  ``onBehalfOf.userId``.
* Non-KMS events that name a key: the key reference is looked up (depth-bounded) under the
  field names kmsKeyId / KmsKeyArn / SSEKMSKeyId / KMSMasterKeyID /
  x-amz-server-side-encryption-aws-kms-key-id (any letter case) in requestParameters,
  responseElements and additionalEventData. Writes that create encrypted data are
  ``encrypt``, reads ``decrypt``, Get/Describe/List/Head ``describe``, anything else
  (bucket default encryption, EBS default key, ...) ``admin_other``. Other non-KMS events are
  skipped (``non_kms_event``) without validating their eventTime; Insights events are skipped
  (``insight_event``).
* VPC endpoint network activity events (``eventType: AwsVpceEvent``, ``eventCategory:
  NetworkActivity``) are their own event kind: ``keytrail.operation`` ``network_activity``
  (class ``network``), no ``keytrail.key.uid`` (the key they name is in
  ``aws.cloudtrail.network_key``). They record a call as seen at the endpoint: an allowed
  call is also recorded as its own management event (counting it again would double every
  use), a denied one never reached KMS. So they are searchable, never a use of the key.
* Records with the same eventID and recipient account (Panther's synthetic eventID "1") get
  the same event.id by design: sinks treat them as one delivery.
* ``options.redact_encryption_context``: context KEYS are still listed, but no context value is
  stored anywhere: no ``keytrail.resource`` derived from the context and ``event.original``
  has the values replaced by ``REDACTED``.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import IO, Any, Final

import orjson

from parsers import schema
from parsers.base import (
    LogParser,
    ParseOutcome,
    Quarantined,
    Skipped,
    json_error,
    per_record,
    quarantine,
    register,
    stable_id,
)
from parsers.framing import (
    OVERLONG,
    Batch,
    DocumentTooLarge,
    Framed,
    Tally,
    container_open,
    iter_container,
    iter_lines,
    load_element,
    read_document,
    read_upto,
    rejoin,
    tally_of,
    too_long,
)
from parsers.native import NATIVE
from parsers.netaddr import clean_ip
from parsers.schema import ECS_CATEGORY, ECS_TYPE, OPERATION_CLASS, KeyEvent, operation_class
from parsers.timeutil import format_ms, from_epoch_ms, normalize_iso

DATASET: Final[str] = "aws.cloudtrail"
KMS_SOURCE: Final[str] = "kms.amazonaws.com"
TRAIL_SOURCE: Final[str] = "cloudtrail.amazonaws.com"
# Trail changes that can stop the recording of KMS events: kept as events (not skipped as
# non-KMS) so the loss of the key audit trail is itself on record.
TRAIL_LOGGING_EVENTS: Final[frozenset[str]] = frozenset(
    {"StopLogging", "DeleteTrail", "PutEventSelectors"})

# This family's vendor leftovers (defined with every other field in schema.EXTRA_FIELDS).
EXTRA_FIELDS: Final[dict[str, tuple[str, str]]] = {
    k: v for k, v in schema.EXTRA_FIELDS.items() if k.startswith("aws.cloudtrail.")
}

# What makes an event a use of a key: cleared on network activity events.
_KEY_ATTRS: Final[tuple[str, ...]] = ("key_uid", "key_destination_uid", "resource")
_HEAD_BYTES: Final[int] = 1 << 20
# Containers streamed element by element (S3 delivery, CloudWatch export, arrays).
_OPENER: Final = container_open((b"Records", b"events"))
_MAX_ALIASES: Final[int] = 4096
_EMPTY: Final[dict[str, Any]] = {}
_BOM: Final[bytes] = b"\xef\xbb\xbf"

# Compiled fast paths (parsers/native/src/cloudtrail.rs): None = every record in Python.
_NATIVE_LINES: Callable[[str, bool], Any] | None = (
    NATIVE.CloudTrailLines if NATIVE is not None else None
)
_NATIVE_DOC: Callable[[bytes, str, bool], Iterator[Any] | None] | None = (
    NATIVE.cloudtrail_document if NATIVE is not None else None
)

# --- verb tables -------------------------------------------------------------------------

_KMS_OPERATION: Final[dict[str, str]] = {
    # crypto
    "Encrypt": "encrypt",
    "Decrypt": "decrypt",
    "ReEncrypt": "reencrypt",
    "GenerateDataKey": "generate_data_key",
    "GenerateDataKeyWithoutPlaintext": "generate_data_key",
    "GenerateDataKeyPair": "generate_data_key",
    "GenerateDataKeyPairWithoutPlaintext": "generate_data_key",
    "Sign": "sign",
    "Verify": "verify",
    "GenerateMac": "mac",
    "VerifyMac": "mac",
    "DeriveSharedSecret": "derive",
    "GenerateRandom": "admin_other",  # no key involved (see module docstring)
    # lifecycle
    "CreateKey": "create",
    "ReplicateKey": "create",
    "EnableKey": "enable",
    "DisableKey": "disable",
    "ScheduleKeyDeletion": "schedule_deletion",
    "CancelKeyDeletion": "cancel_deletion",
    "DeleteKey": "destroy",
    "ImportKeyMaterial": "import",
    "DeleteImportedKeyMaterial": "destroy",
    "DeleteExpiredKeyMaterial": "destroy",
    "RotateKey": "rotate",
    "RotateKeyOnDemand": "rotate",
    "EnableKeyRotation": "update_policy",
    "DisableKeyRotation": "update_policy",
    "UpdatePrimaryRegion": "admin_other",
    "SynchronizeMultiRegionKey": "admin_other",
    "GetParametersForImport": "admin_other",
    "GetPublicKey": "describe",
    "UpdateKeyDescription": "admin_other",
    # policy and grants
    "PutKeyPolicy": "update_policy",
    "GetKeyPolicy": "describe",
    "ListKeyPolicies": "list",
    "CreateGrant": "grant",
    "RetireGrant": "revoke_grant",
    "RevokeGrant": "revoke_grant",
    "ListGrants": "list",
    "ListRetirableGrants": "list",
    # aliases, tags, custom key stores, reads
    "CreateAlias": "admin_other",
    "UpdateAlias": "admin_other",
    "DeleteAlias": "admin_other",
    "ListAliases": "list",
    "TagResource": "admin_other",
    "UntagResource": "admin_other",
    "ListResourceTags": "list",
    "CreateCustomKeyStore": "admin_other",
    "ConnectCustomKeyStore": "admin_other",
    "DisconnectCustomKeyStore": "admin_other",
    "UpdateCustomKeyStore": "admin_other",
    "DeleteCustomKeyStore": "admin_other",
    "DescribeCustomKeyStores": "describe",
    "DescribeKey": "describe",
    "GetKeyRotationStatus": "describe",
    "ListKeyRotations": "list",
    "ListKeys": "list",
}

# KMS verbs whose key identity or extra fields need more than requestParameters.keyId.
_SPECIAL_KMS: Final[frozenset[str]] = frozenset(
    {
        "CreateKey",
        "ReEncrypt",
        "CreateAlias",
        "UpdateAlias",
        "DeleteAlias",
        "ReplicateKey",
        "ScheduleKeyDeletion",
        "EnableKeyRotation",
        "ImportKeyMaterial",
        "GetParametersForImport",
        "DeleteImportedKeyMaterial",
        "PutKeyPolicy",
        "CreateGrant",
        "RetireGrant",
        "RevokeGrant",
    }
)
# Top-level string fields copied verbatim into extra.
_STR_EXTRAS: Final[tuple[tuple[str, str], ...]] = (
    ("eventVersion", "aws.cloudtrail.event_version"),
    ("eventType", "aws.cloudtrail.event_type"),
    ("eventCategory", "aws.cloudtrail.event_category"),
    ("sharedEventID", "aws.cloudtrail.shared_event_id"),
    ("vpcEndpointId", "aws.cloudtrail.vpc_endpoint_id"),
)

# Non-KMS verbs that create encrypted data under the named key / read it back.
_NON_KMS_ENCRYPT: Final[frozenset[str]] = frozenset(
    {
        "PutObject",
        "CopyObject",
        "CreateMultipartUpload",
        "UploadPart",
        "UploadPartCopy",
        "CompleteMultipartUpload",
        "CreateVolume",
        "CreateSnapshot",
        "CreateSnapshots",
        "CopySnapshot",
        "CopyImage",
        "CreateImage",
        "RunInstances",
        "CreateSecret",
        "PutSecretValue",
        "PutParameter",
        "CreateDBInstance",
        "CreateDBCluster",
        "CopyDBSnapshot",
        "CopyDBClusterSnapshot",
        "RestoreDBInstanceFromDBSnapshot",
        "RestoreDBClusterFromSnapshot",
        "CreateTable",
        "CreateFileSystem",
        "CreateLogGroup",
        "CreateTopic",
        "CreateQueue",
        "CreateStream",
        "CreateBackupVault",
    }
)
_NON_KMS_DECRYPT: Final[frozenset[str]] = frozenset(
    {
        "GetObject",
        "GetSecretValue",
        "BatchGetSecretValue",
        "GetParameter",
        "GetParameters",
        "GetParametersByPath",
        "SelectObjectContent",
    }
)
_KEY_REF_FIELDS: Final[frozenset[str]] = frozenset(
    {
        "kmskeyid",
        "kmskeyarn",
        "ssekmskeyid",
        "kmsmasterkeyid",
        "kmsmasterkeyarn",
        "x-amz-server-side-encryption-aws-kms-key-id",
    }
)

# Encryption-context keys that name the protected resource, in priority order.
_CONTEXT_RESOURCE_KEYS: Final[tuple[str, ...]] = (
    "aws:s3:arn",
    "aws:ebs:id",
    "aws:lambda:FunctionArn",
    "aws:rds:db-id",
    "aws:rds:dbc-id",
    "SecretARN",
    "aws:secretsmanager:arn",
    "PARAMETER_ARN",
    "aws:ssm:parameter",
    "aws:dynamodb:tableName",
    "aws:logs:arn",
    "aws:sqs:arn",
    "aws:sns:topicArn",
    "aws:kinesis:arn",
    "aws:elasticfilesystem:filesystem:id",
    "aws:cloudtrail:arn",
    "aws:backup:backup-vault",
    "aws:redshift:arn",
    "aws:workmail:arn",
    "aws:acm:arn",
)

_CONTEXT_RESOURCE_RANK: Final[dict[str, int]] = {k: i for i, k in enumerate(_CONTEXT_RESOURCE_KEYS)}

_CLOUDTRAIL_DETAIL_TYPES_SUFFIX: Final[str] = "via CloudTrail"
_MONTHS: Final[dict[str, int]] = {
    m: i + 1
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
    )
}

# Per-operation derived values, computed once (new_event would recompute them per record).
_OP_META: Final[dict[str, tuple[str, list[str], list[str]]]] = {
    op: (cls, ECS_CATEGORY[cls], ECS_TYPE.get(op, ["info"])) for op, cls in OPERATION_CLASS.items()
}


# --- small pure helpers ------------------------------------------------------------------


def _partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


@lru_cache(maxsize=16384)
def _kms_arn(arn: str) -> tuple[str, str, str] | None:
    """(region, account, resource) of a KMS ARN, resource being 'key/..' or 'alias/..'."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "kms":
        return None
    res = parts[5]
    if not (res.startswith("key/") or res.startswith("alias/")) or len(res) < 5:
        return None
    return parts[3], parts[4], res


# eventTime has one-second resolution: busy trails repeat the same value many times.
_iso = lru_cache(maxsize=8192)(normalize_iso)


def _loose_date(value: object) -> str | None:
    """A CloudTrail response date (ISO, 'Aug 10, 2022, 10:38:27 PM', epoch) -> UTC ms, or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            ms = value * 1000 if abs(value) < 1e11 else value
            return from_epoch_ms(ms)
        except (ValueError, OverflowError, OSError):
            return None
    if not isinstance(value, str) or len(value) > 64:
        return None
    return _loose_date_str(value)


@lru_cache(maxsize=4096)
def _loose_date_str(value: str) -> str | None:
    try:
        return normalize_iso(value)
    except (ValueError, OverflowError):
        pass
    parts = value.replace(",", " ").split()
    if len(parts) not in (4, 5):
        return None
    try:
        month = _MONTHS.get(parts[0][:3].lower())
        if month is None:
            return None
        day, year = int(parts[1]), int(parts[2])
        hms = parts[3].split(":")
        if len(hms) != 3:
            return None
        hour, minute = int(hms[0]), int(hms[1])
        sec_f = float(hms[2])
        if len(parts) == 5:
            ampm = parts[4].upper()
            if ampm not in ("AM", "PM"):
                return None
            # 'Apr 12, 2021 18:58:30 PM': a 24-hour clock with a stray PM; keep the hour.
            if 1 <= hour <= 12:
                if ampm == "AM":
                    hour = 0 if hour == 12 else hour
                elif hour != 12:
                    hour += 12
        dt = datetime(year, month, day, hour, minute, int(sec_f), tzinfo=UTC)
        return format_ms(dt + timedelta(microseconds=int((sec_f % 1) * 1e6)))
    except (ValueError, OverflowError):
        return None


def _as_bool(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        low = value.lower()
        if low in ("true", "false"):
            return low == "true"
    return None


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit() and len(value) < 10:
        return int(value)
    return None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else _EMPTY


def _str_list(value: object) -> list[str]:
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str) and v]
    return []


def policy_summary(policy: object) -> tuple[list[str], bool] | None:
    """(sorted principals of Allow statements, public?) of a key policy, None if unreadable."""
    if isinstance(policy, str):
        try:
            policy = orjson.loads(policy)
        except orjson.JSONDecodeError:
            return None
    if not isinstance(policy, dict):
        return None
    statements = policy.get("Statement")
    if isinstance(statements, dict):
        statements = [statements]
    if not isinstance(statements, list):
        return None
    principals: set[str] = set()
    public = False
    for st in statements:
        if not isinstance(st, dict) or st.get("Effect") != "Allow":
            continue
        unconditioned = not st.get("Condition")
        if "NotPrincipal" in st and unconditioned:
            public = True
        pr = st.get("Principal")
        names: list[str] = []
        if isinstance(pr, str):
            names = [pr]
        elif isinstance(pr, dict):
            for v in pr.values():
                names.extend(_str_list(v))
        principals.update(names)
        if unconditioned and "*" in names:
            public = True
    return sorted(principals), public


def _scan_key_ref(node: object, depth: int) -> str | None:
    """First KMS key reference under a known field name, depth-bounded."""
    if isinstance(node, dict):
        for k, v in node.items():
            if isinstance(v, str):
                if v and k.lower() in _KEY_REF_FIELDS:
                    return v
            elif depth > 0 and isinstance(v, dict | list):
                found = _scan_key_ref(v, depth - 1)
                if found:
                    return found
    elif isinstance(node, list) and depth > 0:
        for item in node[:32]:
            found = _scan_key_ref(item, depth - 1)
            if found:
                return found
    return None


def _dump(value: object, *, sort: bool = False) -> bytes:
    """orjson.dumps that never raises (orjson refuses nesting deeper than 254 levels)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS if sort else 0)
    except TypeError:
        try:
            return repr(value).encode("utf-8", "replace")
        except RecursionError:
            return b"<unserializable record>"


def _redacted(rec: dict[str, Any]) -> dict[str, Any]:
    """Copy of a record with every encryption-context value replaced (for event.original)."""
    out = dict(rec)
    rp = rec.get("requestParameters")
    if isinstance(rp, dict):
        rp = dict(rp)
        for name in (
            "encryptionContext",
            "sourceEncryptionContext",
            "destinationEncryptionContext",
        ):
            ctx = rp.get(name)
            if isinstance(ctx, dict):
                rp[name] = dict.fromkeys(ctx, "REDACTED")
        cons = rp.get("constraints")
        if isinstance(cons, dict):
            cons = dict(cons)
            for name in ("encryptionContextSubset", "encryptionContextEquals"):
                ctx = cons.get(name)
                if isinstance(ctx, dict):
                    cons[name] = dict.fromkeys(ctx, "REDACTED")
            rp["constraints"] = cons
        out["requestParameters"] = rp
    return out


# --- the parser ---------------------------------------------------------------------------


@register
class CloudTrailParser(LogParser):
    """AWS CloudTrail (S3 objects, NDJSON, CloudWatch Logs exports, EventBridge) -> KeyEvent."""

    id = "aws_cloudtrail"
    dataset = DATASET
    description = "AWS CloudTrail: KMS events and non-KMS events naming a KMS key"

    def sniff(self, head: bytes) -> int:
        try:
            h = head.lstrip(b" \t\r\n")
            if h.startswith(_BOM):
                h = h[3:].lstrip(b" \t\r\n")
            if h[:1] not in (b"{", b"["):
                return 0
            if b'"Records"' in h and (
                b'"eventSource"' in h or b'"eventVersion"' in h or b'"eventTime"' in h
            ):
                return 95
            if b'"detail-type"' in h and b"via CloudTrail" in h:
                return 90
            if (
                b"eventSource" in h
                and b"eventName" in h
                and (b"awsRegion" in h or b"userIdentity" in h or b"recipientAccountId" in h)
            ):
                return 90
            if b"AwsCloudTrailInsight" in h:
                return 85
            if b'"source":"aws.kms"' in h or b'"source": "aws.kms"' in h:
                return 70
            if b'"digestStartTime"' in h and b'"logFiles"' in h:
                return 60
        except Exception:  # sniff must never raise
            return 0
        return 0

    # -- framing --------------------------------------------------------------------------

    def parse(self, stream: IO[bytes], path: str) -> Iterator[ParseOutcome]:
        aliases: dict[str, str] = {}
        tally = tally_of(stream)
        head = read_upto(stream, _HEAD_BYTES)
        body = head.lstrip()
        if body.startswith(_BOM):
            body = body[3:].lstrip()
        if not body:
            return
        at_eof = len(head) < _HEAD_BYTES
        nl = body.find(b"\n")
        first_line = body if nl < 0 else body[:nl]
        rest_blank = nl < 0 or not body[nl + 1 :].strip()
        if body[:1] == b"{" and nl >= 0 and not rest_blank:
            try:
                orjson.loads(first_line)
                line_mode = True
            except orjson.JSONDecodeError:
                line_mode = False
            if line_mode:  # NDJSON: one record (or one small container) per line
                yield from self._lines(rejoin(head, stream), path, aliases, tally)
                return
        if _OPENER.match(head):
            # S3 objects `{"Records":[...]}`, exports `{"events":[...]}`, arrays: streamed
            # element by element, never whole (a CloudTrail object can be hundreds of MB).
            yield from self._stream(rejoin(head, stream), path, aliases, tally)
            return
        # Any other single document (an EventBridge envelope, a digest file, a subscription
        # payload): read whole, bounded; else line framing (every line accounted).
        try:
            data = head if at_eof else head + read_document(
                stream, self.options.max_document_bytes - len(head))
        except DocumentTooLarge as exc:
            tally.records += 1
            yield quarantine("document_too_large", path, 0, head, DATASET, str(exc))
            return
        native = self._native_document(data, path, aliases)
        if native is not None:
            for out in native:
                tally.records += 1
                yield out
            return
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            yield from self._lines(io.BytesIO(data), path, aliases, tally)
            return
        yield from self._document(value, path, aliases, tally)

    def _stream(
        self, stream: IO[bytes], path: str, aliases: dict[str, str], tally: Tally
    ) -> Iterator[ParseOutcome]:
        """A streamed container: compiled batches of `Records` where available, else one
        element at a time (log.offset = the element's index, as for a whole document)."""
        native = _NATIVE_DOC if not self.options.include_original else None
        redact = self.options.redact_encryption_context
        max_rec = self.options.max_line_bytes
        batches = frozenset({b"Records"}) if native is not None else frozenset()
        one = _NATIVE_LINES(path, redact).event \
            if _NATIVE_LINES is not None and native is not None else None
        for item in iter_container(stream, max_rec, _OPENER, tally, batches):
            if type(item) is Batch:
                assert native is not None
                got = native(b'{"Records":[' + item.raw + b"]}", path, redact)
                if got is None:
                    continue  # not strictly valid: framed again one element at a time
                n = 0
                base = item.idx
                for out in self._native_records(got, path, aliases):
                    n += 1
                    if isinstance(out, KeyEvent):
                        out.log_offset += base
                        yield out
                    else:
                        yield dataclasses.replace(out, offset=out.offset + base)
                item.count = n
                tally.records += n
                continue
            assert isinstance(item, Framed)
            if one is not None and item.problem is None:
                ev = one(item.raw, item.idx)  # an element the batches did not take
                if ev is not None:
                    yield ev
                    continue
            yield self._element(item, path, aliases)

    def _element(self, item: Framed, path: str, aliases: dict[str, str]) -> ParseOutcome:
        value, bad = load_element(item, path, DATASET, self.options.max_line_bytes)
        if bad is not None:
            return bad
        if item.key is None and isinstance(value, dict) and _is_container(value):
            return quarantine("unknown_shape", path, item.idx, _dump(value), DATASET,
                              "a record container nested in a JSON array")
        return self._record(value, path, item.idx, None, stream_name=None, aliases=aliases)

    def _native_document(
        self, data: bytes, path: str, aliases: dict[str, str]
    ) -> Iterator[ParseOutcome] | None:
        """A `{"Records": [...]}` document through the compiled fast path, None if not taken.

        The fast path yields each record's event, or (index, raw JSON) for the Python path."""
        if _NATIVE_DOC is None or self.options.include_original:
            return None
        got = _NATIVE_DOC(data, path, self.options.redact_encryption_context)
        if got is None:
            return None
        return self._native_records(got, path, aliases)

    def _native_records(
        self, got: Iterator[Any], path: str, aliases: dict[str, str]
    ) -> Iterator[ParseOutcome]:
        for item in got:
            if type(item) is tuple:
                i, raw = item
                yield self._record(
                    orjson.loads(raw), path, i, None, stream_name=None, aliases=aliases
                )
            else:
                yield item

    def _document(
        self, value: object, path: str, aliases: dict[str, str], tally: Tally
    ) -> Iterator[ParseOutcome]:
        if isinstance(value, list):
            tally.records += len(value)
            for i, item in enumerate(value):
                if isinstance(item, dict) and _is_container(item):
                    yield quarantine(
                        "unknown_shape",
                        path,
                        i,
                        _dump(item),
                        DATASET,
                        "a record container nested in a JSON array",
                    )
                else:
                    yield self._record(item, path, i, None, stream_name=None, aliases=aliases)
            return
        if not isinstance(value, dict):
            tally.records += 1
            yield quarantine(
                "not_an_object",
                path,
                0,
                _dump(value),
                DATASET,
                f"top-level JSON {type(value).__name__}",
            )
            return
        for idx, item, group, stream_name in self._expand(value, path, None):
            tally.records += 1
            if isinstance(item, Skipped | Quarantined):
                yield item
            else:
                yield self._record(item, path, idx, group, stream_name=stream_name, aliases=aliases)

    def _lines(
        self, stream: Any, path: str, aliases: dict[str, str], tally: Tally
    ) -> Iterator[ParseOutcome]:
        max_line = self.options.max_line_bytes
        native = None
        if _NATIVE_LINES is not None and not self.options.include_original:
            native = _NATIVE_LINES(path, self.options.redact_encryption_context).event
        for offset, line in iter_lines(stream, max_line, tally):
            if line.startswith(OVERLONG):
                yield too_long(path, offset, line, DATASET, max_line)
                continue
            raw = line[3:] if offset == 0 and line.startswith(_BOM) else line
            if native is not None:
                ev = native(raw, offset)
                if ev is not None:
                    yield ev
                    continue
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                if exc.msg.startswith("unexpected content after document"):
                    tally.records -= 1  # each concatenated value counts as one line
                    yield from self._concatenated(raw, offset, path, aliases, tally)
                else:
                    yield self._bad_json(exc, path, offset, raw)
                continue
            if type(value) is dict and "eventName" in value:
                # Fast path: a plain CloudTrail event line.
                try:
                    out = self._event(value, path, offset, None, stream_name=None, aliases=aliases)
                except RecursionError:
                    out = quarantine(
                        "unknown_shape", path, offset, raw, DATASET, "nesting too deep"
                    )
                yield out
                continue
            yield from self._line_value(value, raw, offset, path, aliases, tally)

    def _line_value(
        self, value: object, raw: bytes, offset: int, path: str, aliases: dict[str, str],
        tally: Tally,
    ) -> Iterator[ParseOutcome]:
        """One framed value (counted once by the caller): a record, or a container whose
        elements are the records (counted here instead of the value)."""
        if not isinstance(value, dict):
            yield quarantine(
                "not_an_object",
                path,
                offset,
                raw,
                DATASET,
                f"line is a JSON {type(value).__name__}",
            )
            return
        if "eventName" in value or not _is_container(value):
            yield self._record(value, path, offset, None, stream_name=None, aliases=aliases)
            return
        tally.records -= 1
        for _idx, item, group, stream_name in self._expand(value, path, offset):
            tally.records += 1
            if isinstance(item, Skipped | Quarantined):
                yield item
            else:
                yield self._record(
                    item, path, offset, group, stream_name=stream_name, aliases=aliases
                )

    def _concatenated(
        self, line: bytes, offset: int, path: str, aliases: dict[str, str], tally: Tally
    ) -> Iterator[ParseOutcome]:
        """`{...}{...}` on one line (Firehose): each JSON value at its own byte offset."""
        pos = 0
        n = len(line)
        while pos < n:
            while pos < n and line[pos] in b" \t\r":
                pos += 1
            if pos >= n:
                return
            chunk = line[pos:]
            try:
                value = orjson.loads(chunk)
                end = n
            except orjson.JSONDecodeError as exc:
                if not exc.msg.startswith("unexpected content after document"):
                    tally.records += 1
                    yield self._bad_json(exc, path, offset + pos, chunk)
                    return
                try:
                    end = pos + len(chunk.decode("utf-8")[: exc.pos].encode("utf-8"))
                    value = orjson.loads(line[pos:end])
                except (UnicodeDecodeError, orjson.JSONDecodeError) as exc2:
                    tally.records += 1
                    yield quarantine("invalid_json", path, offset + pos, chunk, DATASET, str(exc2))
                    return
            tally.records += 1
            yield from self._line_value(value, line[pos:end], offset + pos, path, aliases,
                                        tally)
            pos = end

    @staticmethod
    def _bad_json(exc: orjson.JSONDecodeError, path: str, offset: int, raw: bytes) -> Quarantined:
        reason, detail = json_error(str(exc))
        return quarantine(reason, path, offset, raw, DATASET, detail)

    def _expand(
        self, value: dict[str, Any], path: str, line_offset: int | None
    ) -> Iterator[tuple[int, Any, str | None, str | None]]:
        """A container's records: (index, record-or-outcome, log group, log stream).

        `line_offset` is the line's byte offset in line framing, None in a whole document
        (where outcomes made here carry the record index)."""
        base = 0 if line_offset is None else line_offset
        if "Records" in value:
            recs = value["Records"]
            if not isinstance(recs, list):
                yield (
                    base,
                    quarantine(
                        "unknown_shape",
                        path,
                        base,
                        _dump(value),
                        DATASET,
                        "'Records' is not a list",
                    ),
                    None,
                    None,
                )
                return
            for i, rec in enumerate(recs):
                yield i, rec, None, None
            return
        if "logEvents" in value:
            items = value["logEvents"]
            group = _str(value.get("logGroup"))
            stream_name = _str(value.get("logStream"))
            if not isinstance(items, list):
                yield (
                    base,
                    quarantine(
                        "unknown_shape",
                        path,
                        base,
                        _dump(value),
                        DATASET,
                        "'logEvents' is not a list",
                    ),
                    None,
                    None,
                )
                return
            control = value.get("messageType") == "CONTROL_MESSAGE"
            for i, item in enumerate(items):
                if control:
                    off = i if line_offset is None else line_offset
                    yield i, Skipped("cloudwatch_control_message", path, off), None, None
                else:
                    yield i, item, group, stream_name
            return
        if "events" in value and isinstance(value["events"], list):
            for i, item in enumerate(value["events"]):
                yield i, item, None, None
            return
        if "digestStartTime" in value and "logFiles" in value:
            yield base, Skipped("digest_file", path, base), None, None
            return
        yield base, value, None, None

    # -- one record -------------------------------------------------------------------------

    @per_record(DATASET)
    def _record(
        self,
        item: object,
        path: str,
        offset: int,
        group: str | None,
        *,
        stream_name: str | None,
        aliases: dict[str, str],
    ) -> ParseOutcome:
        if not isinstance(item, dict):
            return quarantine(
                "not_an_object",
                path,
                offset,
                _dump(item),
                DATASET,
                f"record is a JSON {type(item).__name__}",
            )
        rec: dict[str, Any] = item
        if "eventName" not in rec:
            if "detail-type" in rec:  # EventBridge envelope
                dtype = rec.get("detail-type")
                detail = rec.get("detail")
                if not (isinstance(dtype, str) and dtype.endswith(_CLOUDTRAIL_DETAIL_TYPES_SUFFIX)):
                    return Skipped("not_cloudtrail_event", path, offset)
                if not isinstance(detail, dict):
                    return quarantine(
                        "unknown_shape",
                        path,
                        offset,
                        _dump(rec),
                        DATASET,
                        "EventBridge envelope without a 'detail' object",
                    )
                rec = detail
            elif "message" in rec:  # CloudWatch Logs event
                group = group or _str(rec.get("logGroupName")) or _str(rec.get("logGroup"))
                stream_name = (
                    _str(rec.get("logStreamName")) or _str(rec.get("logStream")) or stream_name
                )
                msg = rec.get("message")
                if isinstance(msg, str):
                    try:
                        msg = orjson.loads(msg)
                    except orjson.JSONDecodeError as exc:
                        return quarantine(
                            "invalid_json",
                            path,
                            offset,
                            _dump(rec),
                            DATASET,
                            f"CloudWatch message: {exc}",
                        )
                if not isinstance(msg, dict):
                    return quarantine(
                        "not_an_object",
                        path,
                        offset,
                        _dump(rec),
                        DATASET,
                        "CloudWatch message is not a JSON object",
                    )
                rec = msg
        try:
            return self._event(rec, path, offset, group, stream_name=stream_name, aliases=aliases)
        except RecursionError:  # pathological nesting in an otherwise valid record
            return quarantine("unknown_shape", path, offset, b"", DATASET, "nesting too deep")

    def _network_activity(
        self,
        rec: dict[str, Any],
        path: str,
        offset: int,
        group: str | None,
        *,
        stream_name: str | None,
        aliases: dict[str, str],
    ) -> ParseOutcome:
        """A VPC endpoint network activity event (eventType AwsVpceEvent) as its own kind.

        It records a call as seen at the endpoint: the API call itself has its own record
        when it reached KMS, and a call the endpoint policy denied never did. So it is an
        event (who called what through which endpoint, allowed or denied) but never a use
        of the key: no key uid; the key it named is kept in aws.cloudtrail.network_key.
        """
        inner = dict(rec)
        del inner["eventType"]
        out = self._event(inner, path, offset, group, stream_name=stream_name,
                          aliases=aliases)
        if not isinstance(out, KeyEvent):
            return out
        d = out.__dict__
        if out.key_uid is not None:
            out.extra["aws.cloudtrail.network_key"] = out.key_uid
        for attr in _KEY_ATTRS:
            d[attr] = None
        d["operation"] = "network_activity"
        d["operation_class"] = operation_class("network_activity")
        d["category"] = list(ECS_CATEGORY["network"])
        d["type"] = list(ECS_TYPE["network_activity"])
        out.extra["aws.cloudtrail.event_type"] = "AwsVpceEvent"
        return out

    def _event(
        self,
        rec: dict[str, Any],
        path: str,
        offset: int,
        group: str | None,
        *,
        stream_name: str | None,
        aliases: dict[str, str],
    ) -> ParseOutcome:
        # Hot path: plain dict lookups and `type(x) is str` checks, one KeyEvent call.
        get = rec.get
        if "insightDetails" in rec or get("eventType") == "AwsCloudTrailInsight":
            return Skipped("insight_event", path, offset)
        if get("eventType") == "AwsVpceEvent":  # network activity: the call seen at the VPCE
            return self._network_activity(rec, path, offset, group, stream_name=stream_name,
                                          aliases=aliases)
        source = get("eventSource")
        name = get("eventName")
        if type(name) is not str or not name:
            return quarantine("missing_field", path, offset, _dump(rec), DATASET, "eventName")
        if type(source) is not str or not source:
            return quarantine("missing_field", path, offset, _dump(rec), DATASET, "eventSource")
        rp = get("requestParameters")
        if type(rp) is not dict:
            rp = _EMPTY
        re_ = get("responseElements")
        if type(re_) is not dict:
            re_ = _EMPTY
        is_kms = source == KMS_SOURCE
        foreign_ref: str | None = None
        trail_change = not is_kms and source == TRAIL_SOURCE and name in TRAIL_LOGGING_EVENTS
        if not is_kms and not trail_change:
            foreign_ref = (
                _scan_key_ref(rp, 4)
                or _scan_key_ref(re_, 4)
                or _scan_key_ref(get("additionalEventData"), 2)
            )
            if foreign_ref is None:
                return Skipped("non_kms_event", path, offset)

        event_time = get("eventTime")
        if event_time is None:
            return quarantine("missing_field", path, offset, _dump(rec), DATASET, "eventTime")
        try:
            if type(event_time) is not str:
                raise ValueError(event_time)
            ts = _iso(event_time)
        except (ValueError, OverflowError):
            return quarantine(
                "bad_timestamp", path, offset, _dump(rec), DATASET, f"eventTime {event_time!r}"
            )

        ui = get("userIdentity")
        if type(ui) is not dict:
            ui = _EMPTY
        recipient = get("recipientAccountId")
        if type(recipient) is not str or not recipient:
            recipient = None
        account = recipient or _str(ui.get("accountId"))
        region = get("awsRegion")
        if type(region) is not str or not region:
            region = None
        extra: dict[str, Any] = {}
        kf: dict[str, Any] = {}  # rarely-set KeyEvent fields

        # Resources: KMS key ARNs named by the event (ARN, or lowercase arn in Panther).
        res_keys: list[str] = []
        resources = get("resources")
        if type(resources) is list:
            for r in resources:
                if type(r) is dict:
                    arn = r.get("ARN") or r.get("arn")
                    if type(arn) is str and ":key/" in arn and _kms_arn(arn) is not None:
                        res_keys.append(arn)

        error_code = get("errorCode")
        if type(error_code) is str and error_code:
            outcome = "failure"
            error_message = _str(get("errorMessage"))
        else:
            outcome = "success"
            error_code = error_message = None

        uid: str | None
        alias: str | None
        if is_kms:
            operation = _KMS_OPERATION.get(name) or _generic_operation(name)
            if name in _SPECIAL_KMS:
                uid, alias = self._kms_fields(
                    name, rec, rp, re_, res_keys, account, region, ts, outcome, aliases, kf, extra
                )
            else:
                ref = rp.get("keyId")
                if type(ref) is not str or not ref:
                    ref = _str(_dict(get("serviceEventDetails")).get("keyId"))
                    if ref is None and not res_keys:
                        ref = _str(re_.get("keyId"))
                uid, alias = _resolve(ref, account, region, res_keys, aliases)
                if uid is None:
                    if res_keys:
                        uid = res_keys[0]
                    elif ref is not None:
                        extra["aws.cloudtrail.key_ref"] = ref
                store = rp.get("customKeyStoreId") or re_.get("customKeyStoreId")
                if type(store) is str and store:
                    kf["key_store"] = store
            ctx = rp.get("encryptionContext")
            if type(ctx) is dict and ctx:
                self._context(ctx, None, kf, extra)
        elif trail_change:
            operation = "admin_other"
            uid = alias = None
            trail = rp.get("name") or rp.get("trailName")
            if type(trail) is str and trail:
                kf["resource"] = trail
            if outcome == "success":
                extra["aws.cloudtrail.kms_logged"] = name == "PutEventSelectors" and (
                    _selectors_log_kms(rp))
        else:
            operation = _non_kms_operation(name)
            uid, alias = _resolve(foreign_ref, account, region, res_keys, aliases)
            if uid is None:
                extra["aws.cloudtrail.key_ref"] = foreign_ref
            kf["resource"] = _non_kms_resource(source, rp, re_, resources)

        key_region = key_account = None
        if uid is not None:
            parts = _kms_arn(uid)
            if parts is not None:
                key_region, key_account = parts[0], parts[1]

        user_id, user_name, ptype, paccount, session_id = _principal(ui, extra)
        src_addr = get("sourceIPAddress")
        if type(src_addr) is str and src_addr:
            src_ip = clean_ip(src_addr)
        else:
            src_addr = src_ip = None

        for field, target in _STR_EXTRAS:
            v = get(field)
            if type(v) is str and v:
                extra[target] = v
        ro = get("readOnly")
        if type(ro) is bool:
            extra["aws.cloudtrail.read_only"] = ro
        elif type(ro) is str:
            rob = _as_bool(ro)
            if rob is not None:
                extra["aws.cloudtrail.read_only"] = rob
        tls = get("tlsDetails")
        if type(tls) is dict:
            tls_version = tls.get("tlsVersion")
            if type(tls_version) is str and tls_version:
                extra["aws.cloudtrail.tls_version"] = tls_version
        if group is not None:
            extra["aws.cloudtrail.log_group"] = group
        if stream_name is not None:
            extra["aws.cloudtrail.log_stream"] = stream_name

        event_id = get("eventID")
        if type(event_id) is str and event_id:
            eid = stable_id(DATASET, event_id, recipient or "")
        else:
            eid = stable_id(DATASET, _dump(rec, sort=True))
        if self.options.include_original:
            shown = _redacted(rec) if self.options.redact_encryption_context else rec
            kf["original"] = _dump(shown).decode("utf-8", "replace")

        op_class, category, types = _OP_META[operation]
        user_agent = get("userAgent")
        request_id = get("requestID")
        return KeyEvent(
            timestamp=ts,
            event_id=eid,
            dataset=DATASET,
            provider=source,
            action=name,
            outcome=outcome,  # type: ignore[arg-type]
            operation=operation,
            operation_class=op_class,
            log_file_path=path,
            log_offset=offset,
            category=list(category),
            type=list(types),
            error_code=error_code,
            error_message=error_message,
            key_uid=uid,
            key_provider="aws_kms",
            key_kind="key",
            key_account=key_account,
            key_region=key_region,
            key_alias=alias,
            user_id=user_id,
            user_name=user_name,
            principal_type=ptype,
            principal_account=paccount,
            source_ip=src_ip,
            source_address=src_addr,
            user_agent=user_agent if type(user_agent) is str and user_agent else None,
            cloud_provider="aws",
            cloud_account_id=account,
            cloud_region=region,
            session_id=session_id,
            request_id=request_id if type(request_id) is str and request_id else None,
            extra=extra,
            **kf,
        )

    def _kms_fields(
        self,
        name: str,
        rec: dict[str, Any],
        rp: dict[str, Any],
        re_: dict[str, Any],
        res_keys: list[str],
        account: str | None,
        region: str | None,
        ts: str,
        outcome: str,
        aliases: dict[str, str],
        f: dict[str, Any],
        extra: dict[str, Any],
    ) -> tuple[str | None, str | None]:
        """Key identity and verb-specific fields of the KMS verbs in _SPECIAL_KMS."""
        uid: str | None = None
        alias: str | None = None
        ref: str | None = None
        if name == "CreateKey":
            meta = _dict(re_.get("keyMetadata"))
            uid = _str(meta.get("arn"))
            if uid is None or _kms_arn(uid) is None:
                ref = _str(meta.get("keyId"))
                uid, alias = _resolve(ref, account, region, res_keys, aliases)
            src = meta if meta else rp
            f["key_spec"] = _str(src.get("keySpec")) or _str(src.get("customerMasterKeySpec"))
            f["key_usage"] = _str(src.get("keyUsage"))
            f["key_origin"] = _str(src.get("origin"))
            f["key_store"] = _str(src.get("customKeyStoreId"))
            created = _loose_date(meta.get("creationDate"))
            if created is not None:
                extra["aws.cloudtrail.key_creation_date"] = created
            self._policy(rp.get("policy"), extra)
        elif name == "ReEncrypt":
            src_ref = _str(rp.get("sourceKeyId"))
            dst_ref = _str(rp.get("destinationKeyId"))
            uid, alias = _resolve(src_ref, account, region, [], aliases, alias_fallback=False)
            dst, _ = _resolve(dst_ref, account, region, res_keys, aliases, alias_fallback=False)
            if uid is None and res_keys:
                others = [k for k in res_keys if k != dst]
                uid = others[0] if others else res_keys[0]
            if dst is None and dst_ref is not None:
                others = [k for k in res_keys if k != uid]
                dst = others[0] if others else _resolve(dst_ref, account, region, [], aliases)[0]
            f["key_destination_uid"] = dst
            ref = src_ref
        elif name in ("CreateAlias", "UpdateAlias"):
            ref = _str(rp.get("targetKeyId"))
            uid, _ = _resolve(ref, account, region, res_keys, aliases)
            alias = _str(rp.get("aliasName"))
            if alias is not None and uid is not None and outcome == "success":
                alias_arn = _alias_arn(alias, account, region)
                if alias_arn is not None:
                    _remember(aliases, alias_arn, uid)
        elif name == "DeleteAlias":
            ref = _str(rp.get("aliasName"))
            uid, alias = _resolve(ref, account, region, res_keys, aliases)
            if outcome == "success" and ref is not None:
                alias_arn = _alias_arn(ref, account, region)
                if alias_arn is not None:
                    aliases.pop(alias_arn, None)
        elif name == "ReplicateKey":
            ref = _str(rp.get("keyId"))
            primary, alias = _resolve(ref, account, region, res_keys, aliases)
            replica_meta = _dict(re_.get("replicaKeyMetadata"))
            uid = _str(replica_meta.get("arn"))
            replica_region = _str(rp.get("replicaRegion"))
            if uid is None and primary is not None and replica_region is not None:
                parts = _kms_arn(primary)
                if parts is not None:
                    uid = (
                        f"arn:{_partition(replica_region)}:kms:{replica_region}:"
                        f"{parts[1]}:{parts[2]}"
                    )
            if uid is None:
                uid = primary
            elif primary is not None:
                extra["aws.cloudtrail.primary_key_uid"] = primary
            if replica_meta:
                f["key_spec"] = _str(replica_meta.get("keySpec"))
                f["key_usage"] = _str(replica_meta.get("keyUsage"))
                f["key_origin"] = _str(replica_meta.get("origin"))
        else:
            ref = _str(rp.get("keyId"))
            if ref is None:
                ref = _str(_dict(rec.get("serviceEventDetails")).get("keyId"))
            if ref is None and not res_keys:
                ref = _str(re_.get("keyId"))
            uid, alias = _resolve(ref, account, region, res_keys, aliases)
            if uid is None and res_keys:
                uid = res_keys[0]
            if name == "ScheduleKeyDeletion":
                window = _as_int(rp.get("pendingWindowInDays"))
                if window is None:
                    window = _as_int(re_.get("pendingWindowInDays"))
                if window is not None:
                    extra["aws.cloudtrail.pending_window_days"] = window
                deletion = _loose_date(re_.get("deletionDate"))
                if deletion is None and window is not None and outcome == "success":
                    deletion = _plus_days(ts, window)
                f["key_deletion_date"] = deletion
            elif name == "EnableKeyRotation":
                f["key_rotation_period_days"] = _as_int(rp.get("rotationPeriodInDays"))
            elif name == "ImportKeyMaterial":
                f["key_origin"] = "EXTERNAL"
                if rp.get("expirationModel") != "KEY_MATERIAL_DOES_NOT_EXPIRE":
                    f["key_expires_at"] = _loose_date(rp.get("validTo"))
            elif name in ("GetParametersForImport", "DeleteImportedKeyMaterial"):
                f["key_origin"] = "EXTERNAL"
            elif name == "PutKeyPolicy":
                self._policy(rp.get("policy"), extra)
            elif name == "CreateGrant":
                grantee = _str(rp.get("granteePrincipal"))
                if grantee is not None:
                    extra["aws.cloudtrail.grantee_principal"] = grantee
                retiring = _str(rp.get("retiringPrincipal"))
                if retiring is not None:
                    extra["aws.cloudtrail.retiring_principal"] = retiring
                ops = _str_list(rp.get("operations"))
                if ops:
                    extra["aws.cloudtrail.grant_operations"] = ops
                grant_id = _str(re_.get("grantId"))
                if grant_id is not None:
                    extra["aws.cloudtrail.grant_id"] = grant_id
                cons = _dict(rp.get("constraints"))
                self._context(
                    _dict(cons.get("encryptionContextSubset"))
                    or _dict(cons.get("encryptionContextEquals")),
                    None,
                    f,
                    extra,
                )
            elif name in ("RetireGrant", "RevokeGrant"):
                grant_id = _str(rp.get("grantId")) or _str(
                    _dict(rec.get("additionalEventData")).get("grantId")
                )
                if grant_id is not None:
                    extra["aws.cloudtrail.grant_id"] = grant_id
        if "key_store" not in f:
            store = _str(rp.get("customKeyStoreId")) or _str(re_.get("customKeyStoreId"))
            if store is not None:
                f["key_store"] = store
        if uid is None and ref is not None:
            extra["aws.cloudtrail.key_ref"] = ref
        if name == "ReEncrypt":
            self._context(
                _dict(rp.get("sourceEncryptionContext")),
                _dict(rp.get("destinationEncryptionContext")),
                f,
                extra,
            )
        return uid, alias

    def _context(
        self,
        ctx: dict[str, Any],
        ctx2: dict[str, Any] | None,
        f: dict[str, Any],
        extra: dict[str, Any],
    ) -> None:
        if ctx2:
            keys = sorted(set(ctx) | set(ctx2))
            merged = {**ctx2, **ctx}
        else:
            keys = sorted(ctx)
            merged = ctx
        if not keys:
            return
        extra["aws.cloudtrail.encryption_context_keys"] = keys
        if self.options.redact_encryption_context:
            return
        # Contexts hold a few keys: scan them, not the (longer) table of known keys.
        best = len(_CONTEXT_RESOURCE_KEYS)
        for k in keys:
            rank = _CONTEXT_RESOURCE_RANK.get(k, best)
            if rank < best:
                v = merged[k]
                if type(v) is str and v:
                    best = rank
                    f["resource"] = v

    @staticmethod
    def _policy(policy: object, extra: dict[str, Any]) -> None:
        if policy is None:
            return
        summary = policy_summary(policy)
        if summary is not None:
            extra["aws.cloudtrail.policy_principals"] = summary[0]
            extra["aws.cloudtrail.policy_public"] = summary[1]


def _principal(
    ui: dict[str, Any], extra: dict[str, Any]
) -> tuple[str | None, str | None, str | None, str | None, str | None]:
    """(user.id, user.name, principal type, principal account, session id) of userIdentity."""
    if not ui:
        return None, None, None, None, None
    ptype = _str(ui.get("type"))
    arn = _str(ui.get("arn"))
    invoked_by = _str(ui.get("invokedBy"))
    acct = _str(ui.get("accountId"))
    access_key = _str(ui.get("accessKeyId"))
    session_id: str | None = None
    user_id: str | None
    user_name: str | None = None
    if ptype == "AssumedRole":
        issuer = _dict(_dict(ui.get("sessionContext")).get("sessionIssuer"))
        issuer_arn = _str(issuer.get("arn"))
        if issuer_arn is not None:
            extra["aws.cloudtrail.session_issuer_arn"] = issuer_arn
        user_id = issuer_arn or arn or _str(ui.get("principalId")) or _str(ui.get("userName"))
        if arn is not None and "/" in arn:
            user_name = arn.rsplit("/", 1)[1]
        else:
            principal_id = _str(ui.get("principalId"))
            user_name = _str(ui.get("userName")) or (
                principal_id.rsplit(":", 1)[-1] if principal_id else None
            )
        session_id = access_key
    elif ptype == "IAMUser":
        user_id = arn or _str(ui.get("principalId"))
        user_name = _str(ui.get("userName"))
    elif ptype == "Root":
        user_id = arn or (f"arn:aws:iam::{acct}:root" if acct else None)
        user_name = _str(ui.get("userName")) or "root"
    elif ptype == "FederatedUser":
        user_id = arn or _str(ui.get("principalId"))
        user_name = (
            arn.rsplit("/", 1)[1]
            if arn and "/" in arn
            else _str(_dict(_dict(ui.get("sessionContext")).get("sessionIssuer")).get("userName"))
        )
        session_id = access_key
    elif ptype == "AWSService" or (ptype is None and invoked_by is not None):
        ptype = "AWSService"
        user_id = invoked_by or "AWS Internal"
        user_name = user_id
    elif ptype == "AWSAccount":
        user_id = acct or _str(ui.get("principalId"))
        user_name = _str(ui.get("principalId"))
    elif ptype == "IdentityCenterUser":
        behalf = _dict(ui.get("onBehalfOf"))
        user_id = _str(behalf.get("userId")) or _str(ui.get("principalId"))
        user_name = _str(ui.get("userName"))
    else:
        user_id = arn or _str(ui.get("principalId")) or _str(ui.get("userName"))
        user_name = _str(ui.get("userName"))
    if arn is not None and arn != user_id:
        extra["aws.cloudtrail.user_arn"] = arn
    if invoked_by is not None:
        extra["aws.cloudtrail.invoked_by"] = invoked_by
    if access_key is not None:
        extra["aws.cloudtrail.access_key_id"] = access_key
    return user_id, user_name, ptype, acct, session_id


# --- resolution and non-KMS helpers --------------------------------------------------------


def _is_container(value: dict[str, Any]) -> bool:
    return (
        "Records" in value
        or "logEvents" in value
        or ("events" in value and isinstance(value["events"], list))
        or ("digestStartTime" in value and "logFiles" in value)
    )


def _alias_arn(alias: str, account: str | None, region: str | None) -> str | None:
    if alias.startswith("arn:"):
        return alias if _kms_arn(alias) is not None else None
    if not alias.startswith("alias/") or not account or not region:
        return None
    return f"arn:{_partition(region)}:kms:{region}:{account}:{alias}"


def _remember(aliases: dict[str, str], alias_arn: str, uid: str) -> None:
    if alias_arn not in aliases and len(aliases) >= _MAX_ALIASES:
        aliases.pop(next(iter(aliases)))
    aliases[alias_arn] = uid


def _resolve(
    ref: str | None,
    account: str | None,
    region: str | None,
    res_keys: list[str],
    aliases: dict[str, str],
    *,
    alias_fallback: bool = True,
) -> tuple[str | None, str | None]:
    """(key uid, alias used) for a key reference: key ARN, alias name/ARN or bare key id."""
    if ref is None:
        return None, None
    if ref.startswith("arn:"):
        parts = _kms_arn(ref)
        if parts is None:
            return None, None
        if parts[2].startswith("key/"):
            return ref, None
        alias_arn: str | None = ref
        alias = parts[2]
    elif ref.startswith("alias/"):
        alias = ref
        alias_arn = _alias_arn(ref, account, region)
    else:
        suffix = "/" + ref
        for k in res_keys:
            if k.endswith(suffix):
                return k, None
        if account and region and "/" not in ref and ":" not in ref:
            return f"arn:{_partition(region)}:kms:{region}:{account}:key/{ref}", None
        return None, None
    if alias_arn is not None:
        known = aliases.get(alias_arn)
        if known is not None:
            return known, alias
    if res_keys:
        if alias_arn is not None:
            _remember(aliases, alias_arn, res_keys[0])
        return res_keys[0], alias
    if not alias_fallback:
        return None, alias
    return alias_arn, alias


def _plus_days(ts: str, days: int) -> str | None:
    try:
        dt = datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        return format_ms(dt + timedelta(days=days))
    except (ValueError, OverflowError):
        return None


def _generic_operation(name: str) -> str:
    if name.startswith(("Describe", "Get")):
        return "describe"
    if name.startswith("List"):
        return "list"
    return "admin_other"


def _selectors_log_kms(rp: dict[str, Any]) -> bool:
    """Do PutEventSelectors' (basic or advanced) selectors still record KMS management
    events, reads (Decrypt, GenerateDataKey) included?"""
    basic = rp.get("eventSelectors")
    if type(basic) is list:
        for sel in basic:
            if type(sel) is not dict or sel.get("includeManagementEvents") is False:
                continue
            excluded = sel.get("excludeManagementEventSources")
            if type(excluded) is list and KMS_SOURCE in excluded:
                continue
            if sel.get("readWriteType") in (None, "All"):
                return True
    advanced = rp.get("advancedEventSelectors")
    if type(advanced) is list:
        for sel in advanced:
            fields = sel.get("fieldSelectors") if type(sel) is dict else None
            if type(fields) is not list:
                continue
            management = drops_kms = False
            for f in fields:
                if type(f) is not dict:
                    continue
                field = f.get("field") or f.get("Field")
                if field == "eventCategory" and "Management" in (f.get("equals") or []):
                    management = True
                elif field == "eventSource" and (
                        KMS_SOURCE in (f.get("notEquals") or [])
                        or (f.get("equals") and KMS_SOURCE not in f["equals"])):
                    drops_kms = True
                elif field == "readOnly" and f.get("equals"):
                    drops_kms = True  # only reads or only writes: half of KMS is lost
            if management and not drops_kms:
                return True
    return False


def _non_kms_operation(name: str) -> str:
    if name in _NON_KMS_ENCRYPT:
        return "encrypt"
    if name in _NON_KMS_DECRYPT:
        return "decrypt"
    if name.startswith(("Describe", "Get", "List", "Head")):
        return "describe"
    return "admin_other"


def _non_kms_resource(
    source: str, rp: dict[str, Any], re_: dict[str, Any], resources: object
) -> str | None:
    """The resource a non-KMS event bound to the key (bucket/object, volume, secret, ...)."""
    if source == "s3.amazonaws.com":
        bucket = _str(rp.get("bucketName"))
        if bucket is not None:
            obj = _str(rp.get("key"))
            return f"arn:aws:s3:::{bucket}/{obj}" if obj else f"arn:aws:s3:::{bucket}"
    for section, field in (
        (re_, "volumeId"),
        (re_, "snapshotId"),
        (re_, "imageId"),
        (re_, "arn"),
        (re_, "aRN"),
        (rp, "secretId"),
        (rp, "name"),
        (rp, "dBInstanceIdentifier"),
        (rp, "dBClusterIdentifier"),
        (rp, "tableName"),
        (rp, "volumeId"),
        (rp, "snapshotId"),
    ):
        v = section.get(field)
        if isinstance(v, str) and v:
            return v
    if isinstance(resources, list):
        for r in resources:
            if isinstance(r, dict):
                arn = r.get("ARN") or r.get("arn")
                if isinstance(arn, str) and arn and ":kms:" not in arn:
                    return arn
    return None
