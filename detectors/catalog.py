"""The detector catalog: explicit id -> class registry, YAML metadata, user tuning, filters.

`load_detectors` is what the pipeline calls; `validate_tuning` checks the `detectors:`
section of the user config and returns every error at once, each naming the key and the fix;
`accept` applies allow-lists and suppressions to a finding before it becomes an alert.
"""

from __future__ import annotations

import difflib
import fnmatch
import ipaddress
import re
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any, Final

import yaml

from detectors import (
    anomaly,
    aws_kms,
    azure_keyvault,
    hashicorp_vault,
    hsm,
    lifecycle,
    watchlist,
)
from detectors.base import SEVERITIES, Detector, DetectorError, DetectorMeta, Finding

RULES_DIR: Final[Path] = Path(__file__).resolve().parent / "rules"
TECHNIQUE_ID: Final = re.compile(r"^T\d{4}(\.\d{3})?$")
TACTICS: Final[frozenset[str]] = frozenset({
    "reconnaissance", "resource-development", "initial-access", "execution", "persistence",
    "privilege-escalation", "defense-evasion", "credential-access", "discovery",
    "lateral-movement", "collection", "command-and-control", "exfiltration", "impact",
})
ALLOW_KINDS: Final[tuple[str, ...]] = ("principals", "keys", "source_ips")
TUNING_KEYS: Final[tuple[str, ...]] = ("enabled", "severity", "risk_score", "params", "allow",
                                       "suppress", "exceptions")
EXCEPTION_KEYS: Final[tuple[str, ...]] = ("principal", "key", "entity", "schedule", "expires",
                                          "reason")
ALERT_TIERS: Final[tuple[str, ...]] = ("baseline", "always")
DATE: Final = re.compile(r"^\d{4}-\d{2}-\d{2}$")
SUPPRESS_FIELDS: Final[tuple[str, ...]] = ("user.id", "keytrail.key.uid", "keytrail.alert.entity",
                                           "source.ip")
DURATION: Final = re.compile(r"^\d+[hd]$")


class DetectorRegistry:
    """Explicit id -> detector class registry; a duplicate id is an error."""

    def __init__(self) -> None:
        self.classes: dict[str, type[Detector]] = {}

    def register(self, cls: type[Detector]) -> type[Detector]:
        if cls.id in self.classes:
            raise DetectorError(f"duplicate detector id {cls.id!r} ({cls.__module__})")
        self.classes[cls.id] = cls
        return cls


REGISTRY: Final[DetectorRegistry] = DetectorRegistry()
for _cls in (
    aws_kms.KmsKeyDisabledOrDeletionScheduled, aws_kms.KmsImportedKeyMaterialChanged,
    aws_kms.KmsKeyPolicyChanged, aws_kms.KmsKeyPolicyOpened,
    aws_kms.KmsGrantToUnexpectedPrincipal, aws_kms.KmsCrossAccountKeyEncryption,
    aws_kms.KmsDeniedBurst, aws_kms.CloudTrailKmsLoggingStopped,
    azure_keyvault.AkvObjectDeleted, azure_keyvault.AkvObjectPurged,
    azure_keyvault.AkvBackupRestoreRecover, azure_keyvault.AkvAccessPolicyChanged,
    azure_keyvault.AkvAccessPolicyChurn, azure_keyvault.AkvBurstRetrieval,
    azure_keyvault.AkvAuditLoggingChanged,
    azure_keyvault.AkvRareIdentityRead, azure_keyvault.AkvDailyVolumeAnomaly,
    hashicorp_vault.VaultRootTokenUsed, hashicorp_vault.VaultAuditDeviceChanged,
    hashicorp_vault.VaultPolicyChanged, hashicorp_vault.VaultTransitKeyMadeExportable,
    hashicorp_vault.VaultTransitKeyExported, hashicorp_vault.VaultTransitKeyDeleted,
    hashicorp_vault.VaultSealOrRekey, hashicorp_vault.VaultBurstReads,
    hashicorp_vault.VaultOrphanTokenCreated,
    hsm.HsmKeyExtraction, hsm.HsmKeyShared, hsm.HsmUserCreated, hsm.HsmQuorumChanged,
    hsm.HsmLoginFailures, hsm.HsmRebootCounterJump,
    lifecycle.KeyRotationOverdue, lifecycle.KeyUsedWhileUnusable, lifecycle.KeyNewPrincipal,
    lifecycle.KeySeparationOfDuties, lifecycle.KeyDormant, lifecycle.KeyUnknownAsset,
    lifecycle.KeyExpiryApproaching,
    anomaly.KeyUsageAnomaly, watchlist.SensitiveObjectRead,
):
    REGISTRY.register(_cls)


# --- metadata ------------------------------------------------------------------------------

def _meta_errors(raw: Any, path: Path) -> list[str]:
    where = f"{path.name}"
    if not isinstance(raw, dict):
        return [f"{where}: expected a mapping at the top level"]
    errs: list[str] = []
    for k in ("id", "title", "description", "severity", "risk_score", "runbook",
              "false_positives", "techniques", "datasets", "cases"):
        if k not in raw:
            errs.append(f"{where}: missing required key {k!r}")
    if raw.get("id") != path.stem:
        errs.append(f"{where}: id {raw.get('id')!r} must equal the file name {path.stem!r}")
    if raw.get("severity") not in SEVERITIES:
        errs.append(f"{where}: severity {raw.get('severity')!r} not one of {', '.join(SEVERITIES)}")
    rs = raw.get("risk_score")
    if not isinstance(rs, int) or isinstance(rs, bool) or not 0 <= rs <= 100:
        errs.append(f"{where}: risk_score must be an integer 0-100, got {rs!r}")
    for i, t in enumerate(raw.get("techniques") or []):
        if not isinstance(t, dict) or not TECHNIQUE_ID.match(str(t.get("id", ""))) or not t.get(
                "name") or t.get("tactic") not in TACTICS:
            errs.append(f"{where}: techniques[{i}] needs id (T1234 or T1234.001), name and an "
                        f"ATT&CK tactic, got {t!r}")
    if not raw.get("techniques"):
        errs.append(f"{where}: at least one ATT&CK technique is required")
    if raw.get("alert_tier", "baseline") not in ALERT_TIERS:
        errs.append(f"{where}: alert_tier must be one of {', '.join(ALERT_TIERS)}")
    if not set(raw.get("baseline_by") or ["principal"]) <= {"principal", "key"}:
        errs.append(f"{where}: baseline_by must list principal and/or key")
    if not DURATION.match(str(raw.get("suppression_window", "1d"))):
        errs.append(f"{where}: suppression_window must look like 1h or 1d")
    return errs


@cache
def _load_yaml(path: Path) -> dict[str, Any]:
    with path.open("rb") as fh:
        raw = yaml.safe_load(fh)
    errs = _meta_errors(raw, path)
    if errs:
        raise DetectorError("; ".join(errs), path=str(path))
    assert isinstance(raw, dict)
    return raw


def load_meta(detector_id: str) -> DetectorMeta:
    """Metadata of one detector from detectors/rules/<id>.yaml (a fresh copy)."""
    path = RULES_DIR / f"{detector_id}.yaml"
    if not path.exists():
        raise DetectorError(f"detector {detector_id!r} has no metadata file", path=str(path))
    raw = _load_yaml(path)
    cls = REGISTRY.classes[detector_id]
    params = {**cls.default_params(), **(raw.get("params") or {})}
    return DetectorMeta(
        id=raw["id"], title=raw["title"], description=raw["description"].strip(),
        severity=raw["severity"], risk_score=raw["risk_score"], version=raw.get("version", 1),
        techniques=[dict(t) for t in raw["techniques"]], datasets=list(raw["datasets"]),
        suppression_window=raw.get("suppression_window", "1d"),
        false_positives=str(raw["false_positives"]).strip(),
        runbook=str(raw["runbook"]).strip(), params=params,
        cases=[dict(c) for c in raw["cases"]], alert_tier=raw.get("alert_tier", "baseline"),
        baseline_by=list(raw.get("baseline_by") or ["principal"]))


def all_ids() -> list[str]:
    return sorted(REGISTRY.classes)


# --- tuning --------------------------------------------------------------------------------

def _closest(name: str, known: list[str]) -> str:
    m = difflib.get_close_matches(name, known, n=1, cutoff=0.4)
    return f"; did you mean {m[0]!r}?" if m else f"; known: {', '.join(known)}"


def _type_error(path: str, name: str, default: Any, value: Any) -> str | None:
    """Why `value` cannot replace the default parameter value, or None."""
    ex = f"; set e.g. {name}: {_yaml_scalar(default)}"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            return f"{path}: expected true or false, got {value!r}{ex}"
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0 or (
                value == 0 and default > 0):
            return f"{path}: expected a positive integer, got {value!r}{ex}"
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            return f"{path}: expected a positive number, got {value!r}{ex}"
    elif isinstance(default, list):
        if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
            return f"{path}: expected a list, got {value!r}{ex}"
    elif isinstance(default, str) and not isinstance(value, str):
        return f"{path}: expected a string, got {value!r}{ex}"
    return None


def _yaml_scalar(v: Any) -> str:
    return yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip()


def _valid_ip_glob(v: str) -> bool:
    if "/" in v:
        try:
            ipaddress.ip_network(v, strict=False)
        except ValueError:
            return False
    return True


def validate_tuning(section: Any) -> list[str]:
    """Every problem in the `detectors:` config section, each with the key path and a fix."""
    if section is None:
        return []
    if not isinstance(section, dict):
        return [f"detectors: expected a mapping of detector ids, got {type(section).__name__}; "
                "write e.g. detectors: {kms_denied_burst: {params: {threshold: 20}}}"]
    known = all_ids()
    errs: list[str] = []
    for det_id, tune in section.items():
        base = f"detectors.{det_id}"
        if det_id == "alerting":
            errs.extend(_alerting_errors(tune))
            continue
        if det_id == "disabled":
            if not isinstance(tune, list):
                errs.append(f"detectors.disabled: expected a list of detector ids, got {tune!r}; "
                            "write e.g. disabled: [key_dormant]")
                continue
            for i, d in enumerate(tune):
                if d not in REGISTRY.classes:
                    errs.append(f"detectors.disabled[{i}]: unknown detector id {d!r}"
                                + _closest(str(d), known))
            continue
        if det_id not in REGISTRY.classes:
            errs.append(f"{base}: unknown detector id {det_id!r}" + _closest(str(det_id), known))
            continue
        if not isinstance(tune, dict):
            errs.append(f"{base}: expected a mapping with any of {', '.join(TUNING_KEYS)}, got "
                        f"{tune!r}")
            continue
        for k in tune:
            if k not in TUNING_KEYS:
                errs.append(f"{base}.{k}: unknown setting" + _closest(str(k), list(TUNING_KEYS)))
        if "enabled" in tune and not isinstance(tune["enabled"], bool):
            errs.append(f"{base}.enabled: expected true or false, got {tune['enabled']!r}")
        if "severity" in tune and tune["severity"] not in SEVERITIES:
            errs.append(f"{base}.severity: expected one of {', '.join(SEVERITIES)}, got "
                        f"{tune['severity']!r}; set e.g. severity: high")
        if "risk_score" in tune:
            rs = tune["risk_score"]
            if isinstance(rs, bool) or not isinstance(rs, int) or not 0 <= rs <= 100:
                errs.append(f"{base}.risk_score: expected an integer 0-100, got {rs!r}; "
                            "set e.g. risk_score: 47")
        defaults = REGISTRY.classes[det_id].default_params()
        params = tune.get("params")
        if params is not None:
            if not isinstance(params, dict):
                errs.append(f"{base}.params: expected a mapping of parameter names, got "
                            f"{params!r}")
            else:
                for name, value in params.items():
                    if name not in defaults:
                        errs.append(f"{base}.params.{name}: unknown parameter"
                                    + _closest(str(name), sorted(defaults)))
                        continue
                    e = _type_error(f"{base}.params.{name}", name, defaults[name], value)
                    if e:
                        errs.append(e)
        allow = tune.get("allow")
        if allow is not None:
            if not isinstance(allow, dict):
                errs.append(f"{base}.allow: expected a mapping with {', '.join(ALLOW_KINDS)}")
            else:
                for kind, globs in allow.items():
                    if kind not in ALLOW_KINDS:
                        errs.append(f"{base}.allow.{kind}: unknown allow-list"
                                    + _closest(str(kind), list(ALLOW_KINDS)))
                    elif not isinstance(globs, list) or not all(isinstance(g, str) for g in globs):
                        errs.append(f"{base}.allow.{kind}: expected a list of glob strings, got "
                                    f"{globs!r}; write e.g. "
                                    f"{kind}: ['arn:aws:iam::*:role/Backup*']")
                    elif kind == "source_ips":
                        for i, g in enumerate(globs):
                            if not _valid_ip_glob(g):
                                errs.append(f"{base}.allow.source_ips[{i}]: {g!r} is not a CIDR "
                                            "or IP glob; write e.g. 10.0.0.0/8 or 192.0.2.*")
        errs.extend(_exception_errors(base, tune.get("exceptions")))
        sup = tune.get("suppress")
        if sup is not None:
            if not isinstance(sup, list):
                errs.append(f"{base}.suppress: expected a list of {{field, value}} rules; write "
                            "e.g. suppress: [{field: user.id, value: 'arn:aws:iam::*:role/Ops*'}]")
            else:
                for i, rule in enumerate(sup):
                    p = f"{base}.suppress[{i}]"
                    if not isinstance(rule, dict) or set(rule) != {"field", "value"}:
                        errs.append(f"{p}: expected exactly the keys field and value, got {rule!r}")
                        continue
                    f = str(rule["field"])
                    if f not in SUPPRESS_FIELDS and not f.startswith("details."):
                        errs.append(f"{p}.field: unknown field {f!r}"
                                    + _closest(f, list(SUPPRESS_FIELDS))
                                    + " (or details.<name>)")
                    if not isinstance(rule["value"], str):
                        errs.append(f"{p}.value: expected a glob string, got {rule['value']!r}")
    return errs


def _alerting_errors(tune: Any) -> list[str]:
    from detectors.alerting import AlertPolicy

    defaults = AlertPolicy.defaults()
    if not isinstance(tune, dict):
        return [f"detectors.alerting: expected a mapping with any of {', '.join(defaults)}; "
                "write e.g. alerting: {min_alert_risk: 40}"]
    errs = []
    for k, v in tune.items():
        if k not in defaults:
            errs.append(f"detectors.alerting.{k}: unknown setting" + _closest(str(k),
                                                                             list(defaults)))
            continue
        e = _type_error(f"detectors.alerting.{k}", k, defaults[k], v)
        if e:
            errs.append(e)
        elif k == "ticket_pattern":
            try:
                re.compile(v)
            except re.error as exc:
                errs.append(f"detectors.alerting.ticket_pattern: not a regular expression "
                            f"({exc}); write e.g. ticket_pattern: 'CHG\\d+'")
    return errs


def _exception_errors(base: str, excs: Any) -> list[str]:
    """Problems in `detectors.<id>.exceptions` (each a mapping of EXCEPTION_KEYS)."""
    from detectors.alerting import schedule_error

    if excs is None:
        return []
    example = ("write e.g. exceptions: [{principal: 'arn:aws:iam::*:role/Backup*', "
               "reason: 'nightly backup', expires: '2026-12-31'}]")
    if not isinstance(excs, list):
        return [f"{base}.exceptions: expected a list of exceptions; {example}"]
    errs = []
    for i, exc in enumerate(excs):
        p = f"{base}.exceptions[{i}]"
        if not isinstance(exc, dict):
            errs.append(f"{p}: expected a mapping, got {exc!r}; {example}")
            continue
        for k in exc:
            if k not in EXCEPTION_KEYS:
                errs.append(f"{p}.{k}: unknown key" + _closest(str(k), list(EXCEPTION_KEYS)))
        if not exc.get("reason") or not isinstance(exc.get("reason"), str):
            errs.append(f"{p}.reason: every exception needs a reason (who asked, why); "
                        "add e.g. reason: 'CHG0012345 nightly key backup'")
        if not any(exc.get(k) for k in ("principal", "key", "entity")):
            errs.append(f"{p}: name what it covers with principal, key or entity (globs); "
                        "an exception for everything is disabling the detector: use enabled: "
                        "false instead")
        for k in ("principal", "key", "entity"):
            if k in exc and not isinstance(exc[k], str):
                errs.append(f"{p}.{k}: expected a glob string, got {exc[k]!r}")
        if "expires" in exc:
            v = exc["expires"]
            v = v.isoformat() if hasattr(v, "isoformat") else v
            if not isinstance(v, str) or not DATE.match(v):
                errs.append(f"{p}.expires: expected a date YYYY-MM-DD, got {exc['expires']!r}; "
                            "write e.g. expires: '2026-12-31'")
        if "schedule" in exc:
            e = schedule_error(exc["schedule"])
            if e:
                errs.append(f"{p}.schedule: {e}")
    return errs


def normalized_exceptions(excs: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Exceptions with `expires` as a string (YAML may read an unquoted date as a date)."""
    out = []
    for exc in excs or []:
        e = dict(exc)
        if hasattr(e.get("expires"), "isoformat"):
            e["expires"] = e["expires"].isoformat()
        out.append(e)
    return out


def load_detectors(tuning: dict[str, Any] | None = None) -> list[tuple[Detector, DetectorMeta]]:
    """Enabled detectors with metadata, params merged with the user's tuning, in id order."""
    tuning = tuning or {}
    errs = validate_tuning(tuning)
    if errs:
        raise DetectorError("invalid detector tuning: " + " | ".join(errs))
    disabled = set(tuning.get("disabled") or [])
    out: list[tuple[Detector, DetectorMeta]] = []
    for det_id in all_ids():
        meta = load_meta(det_id)
        tune = tuning.get(det_id) or {}
        if det_id in disabled or tune.get("enabled") is False or (
                not meta.enabled and tune.get("enabled") is not True):
            continue
        params = {**meta.params, **(tune.get("params") or {})}
        meta = replace(
            meta, params=params,
            severity=tune.get("severity", meta.severity),
            severity_overridden="severity" in tune,
            risk_score=tune.get("risk_score", meta.risk_score),
            risk_score_overridden="risk_score" in tune,
            allow={k: list(v) for k, v in (tune.get("allow") or {}).items()},
            suppress=[dict(r) for r in tune.get("suppress") or []],
            exceptions=normalized_exceptions(tune.get("exceptions")))
        out.append((REGISTRY.classes[det_id](**params), meta))
    return out


# --- allow-lists and suppressions -------------------------------------------------------------

def _ip_allowed(ip: str, patterns: list[str]) -> bool:
    for p in patterns:
        if "/" in p:
            try:
                if ipaddress.ip_address(ip) in ipaddress.ip_network(p, strict=False):
                    return True
            except ValueError:
                continue
        elif fnmatch.fnmatchcase(ip, p):
            return True
    return False


def finding_fields(f: Finding) -> dict[str, list[str]]:
    """Values a suppression rule can match, by field name."""
    out: dict[str, list[str]] = {
        "user.id": [f.principal] if f.principal else [],
        "keytrail.key.uid": [f.key_uid] if f.key_uid else [],
        "keytrail.alert.entity": [f.entity],
        "source.ip": [str(ip) for ip in f.details.get("source_ips", [])],
    }
    for k, v in f.details.items():
        out[f"details.{k}"] = [str(x) for x in v] if isinstance(v, list) else [str(v)]
    return out


def accept(det: Detector, meta: DetectorMeta, finding: Finding) -> bool:
    """False when the user's allow-lists or suppressions for this detector cover the finding."""
    allow = meta.allow
    if allow:
        if finding.principal and any(fnmatch.fnmatchcase(finding.principal, g)
                                     for g in allow.get("principals", [])):
            return False
        if finding.key_uid and any(fnmatch.fnmatchcase(finding.key_uid, g)
                                   for g in allow.get("keys", [])):
            return False
        ips = [str(i) for i in finding.details.get("source_ips", [])]
        if ips and allow.get("source_ips") and all(
                _ip_allowed(ip, allow["source_ips"]) for ip in ips):
            return False
    if meta.suppress:
        fields = finding_fields(finding)
        for rule in meta.suppress:
            values = fields.get(rule["field"], [])
            if values and all(fnmatch.fnmatchcase(v, rule["value"]) for v in values):
                return False
    return True


def apply_filters(meta: DetectorMeta, tuning: dict[str, Any] | None, finding: Finding) -> bool:
    """`accept` for callers that hold the raw tuning rather than a tuned meta."""
    tune = (tuning or {}).get(meta.id) or {}
    m = replace(meta, allow=tune.get("allow") or meta.allow,
                suppress=tune.get("suppress") or meta.suppress)
    return accept(REGISTRY.classes[meta.id](**meta.params), m, finding)
