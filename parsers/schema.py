"""The normalized key event: the one contract between parsers, detectors and pipelines.

`KeyEvent` is a slotted dataclass with Python attribute names; `FIELDS` maps each attribute
to its ECS / `keytrail.*` field name, type and description. Index templates and the field
reference (docs/fields.md) are generated from `FIELDS`, never written by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal

from parsers.scrub import scrub_text

Outcome = Literal["success", "failure", "unknown"]

# One vocabulary across vendors (DESIGN.md section 2).
OPERATION_CLASS: Final[dict[str, str]] = {
    "encrypt": "crypto",
    "decrypt": "crypto",
    "reencrypt": "crypto",
    "generate_data_key": "crypto",
    "sign": "crypto",
    "verify": "crypto",
    "mac": "crypto",
    "wrap": "crypto",
    "unwrap": "crypto",
    "derive": "crypto",
    "export": "lifecycle",
    "import": "lifecycle",
    "create": "lifecycle",
    "rotate": "lifecycle",
    "enable": "lifecycle",
    "disable": "lifecycle",
    "schedule_deletion": "lifecycle",
    "cancel_deletion": "lifecycle",
    "destroy": "lifecycle",
    "purge": "lifecycle",
    "restore": "lifecycle",
    "backup": "lifecycle",
    "update_policy": "policy",
    "grant": "policy",
    "revoke_grant": "policy",
    "describe": "read_metadata",
    "list": "read_metadata",
    "login": "auth",
    "admin_other": "other",
    # A call seen at a VPC endpoint (CloudTrail network activity events): the same call the
    # API record logs, so never a use of the key (no key uid; the key is kept as a field).
    "network_activity": "network",
}
OPERATIONS: Final[frozenset[str]] = frozenset(OPERATION_CLASS)
OPERATION_CLASSES: Final[tuple[str, ...]] = (
    "crypto",
    "lifecycle",
    "policy",
    "read_metadata",
    "auth",
    "other",
    "network",
)

# ECS allowed values we use, per operation class (event.category / event.type).
ECS_CATEGORY: Final[dict[str, list[str]]] = {
    "crypto": ["configuration"],
    "lifecycle": ["configuration"],
    "policy": ["iam", "configuration"],
    "read_metadata": ["configuration"],
    "auth": ["authentication"],
    "other": ["configuration"],
    "network": ["network"],
}
ECS_TYPE: Final[dict[str, list[str]]] = {
    "network_activity": ["connection"],
    "encrypt": ["access"],
    "decrypt": ["access"],
    "reencrypt": ["access"],
    "generate_data_key": ["access", "creation"],
    "sign": ["access"],
    "verify": ["access"],
    "mac": ["access"],
    "wrap": ["access"],
    "unwrap": ["access"],
    "derive": ["access", "creation"],
    "export": ["access"],
    "import": ["change"],
    "create": ["creation"],
    "rotate": ["change"],
    "enable": ["change"],
    "disable": ["change"],
    "schedule_deletion": ["deletion"],
    "cancel_deletion": ["change"],
    "destroy": ["deletion"],
    "purge": ["deletion"],
    "restore": ["creation"],
    "backup": ["access"],
    "update_policy": ["change"],
    "grant": ["change", "allowed"],
    "revoke_grant": ["change", "deletion"],
    "describe": ["access", "info"],
    "list": ["access", "info"],
    "login": ["start"],
    "admin_other": ["change"],
}

DATASETS: Final[tuple[str, ...]] = (
    "aws.cloudtrail",
    "azure.keyvault",
    "hashicorp_vault.audit",
    "hsm.cloudhsm",
    "hsm.luna",
    "hsm.nshield",
)


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of the normalized event: attribute, ECS/keytrail name, type, description."""

    attr: str
    name: str
    type: str  # keyword | date | long | ip | text | boolean | object
    description: str
    array: bool = False


FIELDS: Final[tuple[FieldSpec, ...]] = (
    FieldSpec("timestamp", "@timestamp", "date", "When the audited action happened, UTC, ms."),
    FieldSpec("event_id", "event.id", "keyword", "Deterministic id: hash of the vendor's event id "
              "plus source identity, or of the record bytes."),
    FieldSpec("dataset", "event.dataset", "keyword", "Source family, e.g. aws.cloudtrail."),
    FieldSpec("provider", "event.provider", "keyword", "Service that logged the event, "
              "e.g. kms.amazonaws.com."),
    FieldSpec("action", "event.action", "keyword", "The vendor's verb, verbatim."),
    FieldSpec("outcome", "event.outcome", "keyword", "success | failure | unknown."),
    FieldSpec("category", "event.category", "keyword", "ECS event categories.", array=True),
    FieldSpec("type", "event.type", "keyword", "ECS event types.", array=True),
    FieldSpec("error_code", "error.code", "keyword", "Vendor error code or HTTP status."),
    FieldSpec("error_message", "error.message", "text", "Vendor error message."),
    FieldSpec("operation", "keytrail.operation", "keyword", "Operation in keytrail's "
              "cross-vendor vocabulary."),
    FieldSpec("operation_class", "keytrail.operation_class", "keyword",
              "crypto | lifecycle | policy | read_metadata | auth | other."),
    FieldSpec("key_uid", "keytrail.key.uid", "keyword", "Canonical key identity, stable across "
              "every way a log names the key."),
    FieldSpec("key_destination_uid", "keytrail.key.destination_uid", "keyword",
              "Second key of a two-key operation (ReEncrypt destination, rewrap target)."),
    FieldSpec("key_provider", "keytrail.key.provider", "keyword",
              "aws_kms | azure_keyvault | azure_managed_hsm | vault_transit | cloudhsm | luna "
              "| nshield."),
    FieldSpec("key_kind", "keytrail.key.kind", "keyword", "key | secret | certificate: what "
              "kind of cryptographic material the uid names."),
    FieldSpec("key_account", "keytrail.key.account", "keyword", "Account / subscription / "
              "namespace owning the key."),
    FieldSpec("key_region", "keytrail.key.region", "keyword", "Region of the key."),
    FieldSpec("key_vault", "keytrail.key.vault", "keyword", "Vault, mount, HSM partition or "
              "cluster holding the key."),
    FieldSpec("key_name", "keytrail.key.name", "keyword", "Key name or label where the log "
              "names it."),
    FieldSpec("key_alias", "keytrail.key.alias", "keyword", "Alias the log used for the key."),
    FieldSpec("key_version", "keytrail.key.version", "keyword", "Key version."),
    FieldSpec("key_spec", "keytrail.key.spec", "keyword", "Key spec / type, e.g. "
              "SYMMETRIC_DEFAULT, RSA_2048, aes256-gcm96."),
    FieldSpec("key_usage", "keytrail.key.usage", "keyword", "Key usage, e.g. "
              "ENCRYPT_DECRYPT, SIGN_VERIFY, GENERATE_VERIFY_MAC."),
    FieldSpec("key_origin", "keytrail.key.origin", "keyword", "AWS_KMS | EXTERNAL | "
              "AWS_CLOUDHSM | EXTERNAL_KEY_STORE | HSM | ..."),
    FieldSpec("key_store", "keytrail.key.store", "keyword", "Custom key store id."),
    FieldSpec("key_rotation_period_days", "keytrail.key.rotation_period_days", "long",
              "Rotation period the log states (EnableKeyRotation)."),
    FieldSpec("key_expires_at", "keytrail.key.expires_at", "date", "Expiry the log states."),
    FieldSpec("key_deletion_date", "keytrail.key.deletion_date", "date",
              "Scheduled deletion / purge date the log states."),
    FieldSpec("user_id", "user.id", "keyword", "Most stable principal id: IAM ARN, Entra "
              "object id, Vault entity id, HSM user."),
    FieldSpec("user_name", "user.name", "keyword", "Principal display name."),
    FieldSpec("principal_type", "keytrail.principal.type", "keyword",
              "IAMUser | AssumedRole | AWSService | user | service_principal | token | "
              "root_token | crypto_officer | crypto_user | ..."),
    FieldSpec("principal_account", "keytrail.principal.account", "keyword",
              "Account / tenant the principal belongs to."),
    FieldSpec("source_ip", "source.ip", "ip", "Client address (absent when the service acted "
              "for itself)."),
    FieldSpec("source_address", "source.address", "keyword", "Client address verbatim "
              "(may be a host name such as 'AWS Internal')."),
    FieldSpec("user_agent", "user_agent.original", "keyword", "Client user agent."),
    FieldSpec("cloud_provider", "cloud.provider", "keyword", "aws | azure | ..."),
    FieldSpec("cloud_account_id", "cloud.account.id", "keyword", "Account / subscription the "
              "event was recorded in."),
    FieldSpec("cloud_region", "cloud.region", "keyword", "Region the event was recorded in."),
    FieldSpec("session_id", "keytrail.session.id", "keyword", "Session / connection / token "
              "accessor that ties operations to a login."),
    FieldSpec("request_id", "keytrail.request.id", "keyword", "Vendor request / event id."),
    FieldSpec("resource", "keytrail.resource", "keyword", "What the key protected, when the log "
              "says so (S3 object, EBS volume, secret path)."),
    FieldSpec("log_file_path", "log.file.path", "keyword", "Source file or object URI."),
    FieldSpec("log_offset", "log.offset", "long", "Byte offset (or record index) of the source "
              "record in its file."),
    FieldSpec("original", "event.original", "keyword", "Raw record (optional, off by default)."),
    FieldSpec("extra", "", "object", "Vendor leftovers, flattened dotted names under "
              "aws.cloudtrail.*, azure.keyvault.*, hashicorp_vault.*, hsm.*."),
)
FIELD_BY_ATTR: Final[dict[str, FieldSpec]] = {f.attr: f for f in FIELDS}

# Vendor leftover fields we emit (generated templates map them explicitly; anything else
# under these prefixes is stored but not indexed, to avoid mapping explosions).
EXTRA_FIELDS: Final[dict[str, tuple[str, str]]] = {
    "aws.cloudtrail.access_key_id": ("keyword", "Access key id used."),
    "aws.cloudtrail.encryption_context_keys": ("keyword", "Encryption context keys."),
    "aws.cloudtrail.event_category": ("keyword", "CloudTrail eventCategory."),
    "aws.cloudtrail.event_type": (
        "keyword",
        "CloudTrail eventType (AwsApiCall, AwsServiceEvent, ...).",
    ),
    "aws.cloudtrail.event_version": ("keyword", "CloudTrail eventVersion."),
    "aws.cloudtrail.grant_id": ("keyword", "KMS grant id."),
    "aws.cloudtrail.grant_operations": ("keyword", "CreateGrant operations."),
    "aws.cloudtrail.grantee_principal": ("keyword", "CreateGrant granteePrincipal."),
    "aws.cloudtrail.invoked_by": ("keyword", "userIdentity.invokedBy."),
    "aws.cloudtrail.key_creation_date": (
        "date",
        "CreateKey keyMetadata.creationDate, normalized to UTC.",
    ),
    "aws.cloudtrail.kms_logged": (
        "boolean",
        "After this trail change (StopLogging, DeleteTrail, PutEventSelectors), does the trail "
        "still record KMS management events?",
    ),
    "aws.cloudtrail.key_ref": (
        "keyword",
        "Key reference as logged when it could not be resolved to an ARN (no "
        "account/region known).",
    ),
    "aws.cloudtrail.log_group": ("keyword", "CloudWatch Logs log group the event came through."),
    "aws.cloudtrail.log_stream": ("keyword", "CloudWatch Logs log stream the event came through."),
    "aws.cloudtrail.pending_window_days": ("long", "ScheduleKeyDeletion pendingWindowInDays."),
    "aws.cloudtrail.policy_principals": (
        "keyword",
        "Principals named in a PutKeyPolicy / CreateKey policy.",
    ),
    'aws.cloudtrail.policy_public': (
        'boolean',
        "The key policy allows Principal '*' without a restricting condition.",
    ),
    "aws.cloudtrail.primary_key_uid": (
        "keyword",
        "ReplicateKey: the primary multi-Region key the replica was created from.",
    ),
    "aws.cloudtrail.read_only": ("boolean", "CloudTrail readOnly."),
    "aws.cloudtrail.retiring_principal": ("keyword", "CreateGrant retiringPrincipal."),
    "aws.cloudtrail.session_issuer_arn": ("keyword", "Role the session was issued from."),
    "aws.cloudtrail.shared_event_id": ("keyword", "sharedEventID linking cross-account copies."),
    "aws.cloudtrail.tls_version": ("keyword", "tlsDetails.tlsVersion."),
    "aws.cloudtrail.user_arn": (
        "keyword",
        "userIdentity.arn verbatim (for AssumedRole the session ARN; user.id holds the role ARN).",
    ),
    "aws.cloudtrail.vpc_endpoint_id": ("keyword", "vpcEndpointId."),
    "aws.cloudtrail.network_key": (
        "keyword", "Network activity events (VPC endpoint): the key the call named; such an "
                   "event is not a use of the key, so keytrail.key.uid stays empty."),
    "azure.keyvault.audit_logs_enabled": (
        "boolean",
        "A diagnostic-setting request body: does it still export AuditEvent (or allLogs)?",
    ),
    "azure.keyvault.access_policy_object_ids": (
        "keyword",
        "Object ids named in an access-policy change request body.",
    ),
    "azure.keyvault.access_policy_operation": (
        "keyword",
        "Activity Log access-policy change kind: add | replace | remove.",
    ),
    'azure.keyvault.access_policy_permissions': (
        'keyword',
        "Permissions in an access-policy change request body, as '<kind>:<perm>'.",
    ),
    "azure.keyvault.app_id": ("keyword", "Application (client) id."),
    "azure.keyvault.category": (
        "keyword",
        "Log category: AuditEvent (data plane) or Administrative (Activity Log).",
    ),
    "azure.keyvault.correlation_id": ("keyword", "correlationId."),
    "azure.keyvault.duration_ms": ("long", "Request duration."),
    "azure.keyvault.enabled": (
        "boolean",
        "The enabled attribute of the key / secret / certificate as the log reports it.",
    ),
    "azure.keyvault.http_status_code": ("long", "HTTP status code."),
    "azure.keyvault.managed_identity_resource_id": (
        "keyword",
        "xms_mirid claim: resource id of the calling managed identity.",
    ),
    "azure.keyvault.object_type": ("keyword", "key | secret | certificate | vault."),
    "azure.keyvault.operation_name": ("keyword", "operationName verbatim."),
    "azure.keyvault.request_uri": ("keyword", "requestUri of the audited call."),
    "azure.keyvault.resource_id": ("keyword", "Azure resourceId of the vault."),
    "azure.keyvault.result_signature": ("keyword", "resultSignature."),
    "azure.keyvault.result_type": (
        "keyword",
        "resultType verbatim (Key Vault writes Success even on 403).",
    ),
    "azure.keyvault.tenant_id": ("keyword", "Entra tenant id."),
    'hashicorp_vault.accessor': ('keyword', "Token accessor (HMAC'd as logged)."),
    "hashicorp_vault.audit_device": ("keyword", "Audit device path enabled / disabled."),
    "hashicorp_vault.auth_method": ("keyword", "Auth mount used for a login."),
    "hashicorp_vault.batch_size": ("long", "Number of batch_input items."),
    "hashicorp_vault.client_certificate_serial": ("keyword", "KMIP client certificate serial."),
    "hashicorp_vault.endpoint": (
        "keyword",
        "Engine-relative endpoint template, e.g. transit/encrypt or sys/policies/acl.",
    ),
    "hashicorp_vault.key_config.allow_plaintext_backup": (
        "boolean",
        "Transit key allow_plaintext_backup flag set.",
    ),
    'hashicorp_vault.key_config.auto_rotate_period': (
        'keyword',
        "Transit auto_rotate_period (when not HMAC'd).",
    ),
    "hashicorp_vault.key_config.deletion_allowed": (
        "boolean",
        "Transit key deletion_allowed flag set.",
    ),
    "hashicorp_vault.key_config.derived": ("boolean", "Transit key derived flag."),
    "hashicorp_vault.key_config.exportable": ("boolean", "Transit key exportable flag set."),
    "hashicorp_vault.key_config.min_decryption_version": (
        "long",
        "Transit min_decryption_version set.",
    ),
    "hashicorp_vault.key_config.min_encryption_version": (
        "long",
        "Transit min_encryption_version set.",
    ),
    "hashicorp_vault.kmip": ("boolean", "KMIP secrets-engine record."),
    "hashicorp_vault.kmip_result_reason": ("keyword", "KMIP ResultReason name."),
    "hashicorp_vault.kmip_role": ("keyword", "KMIP role."),
    "hashicorp_vault.kmip_scope": ("keyword", "KMIP scope."),
    "hashicorp_vault.kv_versions": ("long", "KV v2 versions a delete / undelete / destroy named."),
    "hashicorp_vault.mount_point": ("keyword", "Mount path."),
    "hashicorp_vault.mount_type": ("keyword", "Mount type (transit, kv, pki, ...)."),
    "hashicorp_vault.namespace": ("keyword", "Namespace path."),
    "hashicorp_vault.new_token_policies": (
        "keyword",
        "Policies of a token issued by the request (token create / login).",
    ),
    "hashicorp_vault.operation": ("keyword", "request.operation."),
    "hashicorp_vault.orphan": (
        "boolean",
        "Token creation without a parent (create-orphan or no_parent=true).",
    ),
    "hashicorp_vault.path": ("keyword", "request.path."),
    "hashicorp_vault.policies": ("keyword", "Token policies."),
    "hashicorp_vault.policy_name": ("keyword", "ACL / RGP / EGP policy acted on."),
    "hashicorp_vault.qualifier": (
        "keyword",
        "Endpoint qualifier: datakey type, export type, PKI role or generate type, hash algorithm.",
    ),
    "hashicorp_vault.record_type": (
        "keyword",
        "Audit record type (request, response, kmip-request, kmip-response) that yielded "
        "the event.",
    ),
    "hashicorp_vault.records": (
        "keyword",
        "Audit records behind the event: pair | response_only | request_only.",
    ),
    "hashicorp_vault.request_offset": ("long", "Byte offset of the paired request record."),
    "hashicorp_vault.root_token": ("boolean", "The request used a root token."),
    "hashicorp_vault.root_token_created": (
        "boolean",
        "The request issued a token with the root policy.",
    ),
    "hashicorp_vault.syslog_host": ("keyword", "Host from the syslog frame around the record."),
    "hashicorp_vault.token_type": ("keyword", "Token type."),
    "hsm.access_id": ("keyword", "Luna access (application) id."),
    "hsm.alarm": ("boolean", "HSM alarm / tamper / decommission / zeroization notice."),
    "hsm.alarm_code": ("keyword", "Vendor alarm code, e.g. Luna ALM2006."),
    "hsm.appname": ("keyword", "nShield key application name."),
    "hsm.attributes": ("keyword", "Object attributes a command modified."),
    "hsm.card_set": ("keyword", "nShield card set (ACS/OCS) name or hash."),
    "hsm.cluster_id": ("keyword", "CloudHSM cluster id (from the CloudWatch log group)."),
    "hsm.command": ("keyword", "Appliance shell command line (LunaSH) as logged."),
    "hsm.command_type": ("keyword", "CloudHSM Command Type(hex) verbatim."),
    "hsm.event_category": (
        "keyword",
        "Vendor event category (Luna: HSM Access, Key Management, ...; CEF device event class).",
    ),
    "hsm.ident": ("keyword", "nShield key identifier."),
    "hsm.key_handle": ("keyword", "Key handle."),
    "hsm.key_hash": ("keyword", "nShield key hash."),
    "hsm.log_type": ("keyword", "Vendor log record type."),
    "hsm.module_esn": ("keyword", "nShield module electronic serial number."),
    "hsm.opcode": ("keyword", "Vendor opcode."),
    "hsm.partition": ("keyword", "Partition / slot."),
    "hsm.public_key_handle": ("keyword", "Public key handle of a key-pair operation."),
    "hsm.quorum": ("boolean", "Quorum (M of N) / card-set (ACS, OCS) related command."),
    "hsm.reboot_counter": ("long", "HSM reboot counter."),
    "hsm.resource_id": ("keyword", "Luna Cloud HSM (DPoD) service id."),
    "hsm.return_code": ("keyword", "Vendor return code verbatim."),
    "hsm.role": ("keyword", "Vendor role name or id the actor held."),
    "hsm.sequence_no": ("keyword", "Audit sequence number."),
    "hsm.serial": ("keyword", "HSM serial / id."),
    "hsm.session_handle": ("keyword", "Vendor session handle verbatim."),
    "hsm.syslog_host": ("keyword", "Host name of the syslog header."),
    "hsm.syslog_program": ("keyword", "Program (tag) of the syslog header."),
    "hsm.target_user": ("keyword", "User a management command acted on."),
    "hsm.tenant_id": ("keyword", "Luna Cloud HSM (DPoD) tenant id."),
    "hsm.user_type": ("keyword", "Crypto officer / crypto user / appliance user type."),
    "hsm.zeroize": ("boolean", "The event erased (or reports erasure of) HSM contents."),
}


@dataclass
class KeyEvent:
    """One audited key-management action, normalized. See `FIELDS` for meanings.

    Not slotted on purpose: optional fields default to class attributes (None), so
    `new_event` can build an event by filling its __dict__ with only the fields a record
    has, which is several times cheaper than a 46-argument __init__.
    """

    timestamp: str
    event_id: str
    dataset: str
    provider: str
    action: str
    outcome: Outcome
    operation: str
    operation_class: str
    log_file_path: str
    log_offset: int
    category: list[str] = field(default_factory=list)
    type: list[str] = field(default_factory=list)
    error_code: str | None = None
    error_message: str | None = None
    key_uid: str | None = None
    key_destination_uid: str | None = None
    key_provider: str | None = None
    key_kind: str | None = None
    key_account: str | None = None
    key_region: str | None = None
    key_vault: str | None = None
    key_name: str | None = None
    key_alias: str | None = None
    key_version: str | None = None
    key_spec: str | None = None
    key_usage: str | None = None
    key_origin: str | None = None
    key_store: str | None = None
    key_rotation_period_days: int | None = None
    key_expires_at: str | None = None
    key_deletion_date: str | None = None
    user_id: str | None = None
    user_name: str | None = None
    principal_type: str | None = None
    principal_account: str | None = None
    source_ip: str | None = None
    source_address: str | None = None
    user_agent: str | None = None
    cloud_provider: str | None = None
    cloud_account_id: str | None = None
    cloud_region: str | None = None
    session_id: str | None = None
    request_id: str | None = None
    resource: str | None = None
    original: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_flat(self) -> dict[str, Any]:
        """Dotted-name document (ECS names), None values omitted, extras merged in."""
        out: dict[str, Any] = {}
        for spec in _FLAT_SPECS:
            value = getattr(self, spec.attr)
            if value is None or (spec.array and not value):
                continue
            out[spec.name] = value
        for k in sorted(self.extra):
            v = self.extra[k]
            if v is not None:
                out[k] = v
        return out

    def to_doc(self) -> dict[str, Any]:
        """Nested ECS document as written to Elasticsearch / OpenSearch."""
        return nest(self.to_flat())

    @classmethod
    def from_flat(cls, flat: dict[str, Any]) -> KeyEvent:
        """Inverse of `to_flat` (used by golden tests and readers of the local store)."""
        kwargs: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for name, value in flat.items():
            attr = _ATTR_BY_NAME.get(name)
            if attr is None:
                extra[name] = value
            else:
                kwargs[attr] = value
        kwargs["extra"] = extra
        return cls(**kwargs)


_FLAT_SPECS: Final[tuple[FieldSpec, ...]] = tuple(f for f in FIELDS if f.attr != "extra")
_ATTR_BY_NAME: Final[dict[str, str]] = {f.name: f.attr for f in _FLAT_SPECS}


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """Turn {'a.b': 1} into {'a': {'b': 1}}; '@timestamp' stays top level."""
    out: dict[str, Any] = {}
    for name, value in flat.items():
        parts = name.split(".")
        node = out
        for p in parts[:-1]:
            nxt = node.get(p)
            if not isinstance(nxt, dict):
                nxt = {}
                node[p] = nxt
            node = nxt
        node[parts[-1]] = value
    return out


def operation_class(operation: str) -> str:
    """The operation class of a vocabulary operation ('other' for unknown ones)."""
    return OPERATION_CLASS.get(operation, "other")


def new_event(
    *,
    timestamp: str,
    event_id: str,
    dataset: str,
    provider: str,
    action: str,
    outcome: Outcome,
    operation: str,
    log_file_path: str,
    log_offset: int,
    **fields: Any,
) -> KeyEvent:
    """Build a KeyEvent, deriving operation_class and the ECS category/type lists.

    Unknown field names raise TypeError, as KeyEvent(...) would.
    """
    bad = fields.keys() - _OPTIONAL_ATTRS
    if bad:
        raise TypeError(f"unknown KeyEvent fields: {sorted(bad)}")
    op_class = OPERATION_CLASS.get(operation, "other")
    ev = _new(KeyEvent)
    d = ev.__dict__
    d.update(fields)
    d["timestamp"] = timestamp
    d["event_id"] = event_id
    d["dataset"] = dataset
    d["provider"] = provider
    d["action"] = action
    d["outcome"] = outcome
    d["operation"] = operation
    d["operation_class"] = op_class
    d["log_file_path"] = log_file_path
    d["log_offset"] = log_offset
    d["category"] = list(ECS_CATEGORY[op_class])
    d["type"] = list(ECS_TYPE.get(operation, _INFO))
    if "extra" not in d or d["extra"] is None:
        d["extra"] = {}
    if d.get("original"):  # event.original is stored like any field: secrets scrubbed
        d["original"] = scrub_text(d["original"])
    return ev


_new = object.__new__
_INFO: Final[list[str]] = ["info"]
_OPTIONAL_ATTRS: Final[frozenset[str]] = frozenset(
    f.attr for f in FIELDS
    if f.attr not in ("timestamp", "event_id", "dataset", "provider", "action", "outcome",
                      "operation", "operation_class", "log_file_path", "log_offset"))
