"""Cross-provider detectors over the key inventory and the usage graph (DESIGN.md section 3).

They see every provider through the same inventory record and edge shapes, so one rule
covers KMS, Key Vault, Vault transit and HSM keys alike.
"""

from __future__ import annotations

import fnmatch
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Final

from detectors.base import Evidence, Finding, InventoryDetector
from detectors.common import days_between, epoch_ms, principal_identity, short_list

ORIGINATOR_OPS: Final[frozenset[str]] = frozenset(
    {"encrypt", "generate_data_key", "sign", "wrap", "mac", "derive"})
RECIPIENT_OPS: Final[frozenset[str]] = frozenset({"decrypt", "verify", "unwrap", "reencrypt"})
CRYPTO_OPS: Final[frozenset[str]] = ORIGINATOR_OPS | RECIPIENT_OPS
ADMIN_OPS: Final[frozenset[str]] = frozenset({
    "create", "import", "enable", "disable", "rotate", "schedule_deletion", "cancel_deletion",
    "destroy", "purge", "restore", "update_policy", "grant", "revoke_grant",
})
UNUSABLE: Final[dict[tuple[str, str | None], str]] = {
    ("suspended", "disabled"): "disabled",
    ("deactivated", "pending_deletion"): "pending deletion",
    ("destroyed", None): "destroyed",
    ("destroyed", "purged"): "purged",
}


def key_edges(edges: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in edges:
        if e.get("edge_type", "principal_key") == "principal_key":
            out[e["key_uid"]].append(e)
    return out


def edge_evidence(es: Iterable[dict[str, Any]], limit: int = 10) -> list[Evidence]:
    """Edges aggregate events; evidence points at the edge (principal, key, op, window)."""
    items = sorted(es, key=lambda e: (e["first_seen"], e["edge_id"]))[:limit]
    return [Evidence(e["edge_id"], e["first_seen"],
                     f"edge:{e['principal']}|{e['operation']}|{e['window_start']}", 0)
            for e in items]


def transition_evidence(t: dict[str, Any]) -> Evidence:
    return Evidence(t.get("event_id") or "", t["at"], t.get("log_file_path") or "",
                    int(t.get("log_offset") or 0))


def _fmt(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _plus_days(ts: str, days: float) -> str:
    dt = datetime.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return _fmt(dt + timedelta(days=days))


def _globs(value: str | None, patterns: list[str]) -> bool:
    return bool(value) and any(fnmatch.fnmatchcase(str(value), p) for p in patterns)


class KeyRotationOverdue(InventoryDetector):
    """A key is used beyond its cryptoperiod: originator use after the due date, or
    recipient use after the recipient-usage period."""

    id: ClassVar[str] = "key_rotation_overdue"

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"grace_days": 0, "recipient_extension_days": 1095}

    def evaluate(self, inventory: list[dict[str, Any]], edges: list[dict[str, Any]],
                 as_of: str) -> Iterable[Finding]:
        by_key = key_edges(edges)
        for rec in inventory:
            rot = rec["rotation"]
            due = rot.get("next_due")
            if not due or rec["state"] != "active" or rot.get("status") not in (
                    "overdue", "overdue_lower_bound"):
                continue
            orig_due = _plus_days(due, self.params["grace_days"])
            recip_due = _plus_days(orig_due, self.params["recipient_extension_days"])
            es = [e for e in by_key.get(rec["uid"], []) if e["count"] > e["failures"]]
            late_orig = [e for e in es if e["operation"] in ORIGINATOR_OPS
                         and e["last_seen"] > orig_due]
            late_recip = [e for e in es if e["operation"] in RECIPIENT_OPS
                          and e["last_seen"] > recip_due]
            if not late_orig and not late_recip:
                continue
            late = late_orig or late_recip
            which = ("originator-usage period (encrypt/sign/wrap)" if late_orig else
                     "recipient-usage period (decrypt/verify/unwrap)")
            ops = sorted({e["operation"] for e in late})
            bound = " (lower bound: creation not seen)" if rot["status"] == "overdue_lower_bound" \
                else ""
            yield Finding(
                entity=rec["uid"], first_seen=min(e["first_seen"] for e in late),
                last_seen=max(e["last_seen"] for e in late),
                explanation=(
                    f"Key {rec['uid']} ({rec.get('purpose')}) was last rotated or created "
                    f"{rot.get('baseline')}; policy {rot.get('policy')} allows "
                    f"{rot.get('cryptoperiod_days')} days, so it was due {due}. It is still "
                    f"used for {', '.join(ops)} beyond its {which}: {rot['overdue_days']} days "
                    f"overdue{bound}."
                    + ("" if rot.get("eligible") else
                       f" Automatic rotation is not possible ({rot.get('eligibility_reason')}):"
                       " create a new key and re-encrypt.")),
                evidence=edge_evidence(late), event_count=sum(e["count"] for e in late),
                key_uid=rec["uid"],
                details={"overdue_days": rot["overdue_days"], "policy": rot.get("policy"),
                         "period": "originator" if late_orig else "recipient"})


class KeyUsedWhileUnusable(InventoryDetector):
    """Crypto use (attempted or successful) of a disabled, pending-deletion or destroyed key."""

    id: ClassVar[str] = "key_used_while_unusable"

    def evaluate(self, inventory: list[dict[str, Any]], edges: list[dict[str, Any]],
                 as_of: str) -> Iterable[Finding]:
        by_key = key_edges(edges)
        for rec in inventory:
            trans = rec.get("transitions") or []
            spans: list[tuple[str, str | None, str, dict[str, Any]]] = []
            for i, t in enumerate(trans):
                label = UNUSABLE.get((t["to"], t.get("substate")))
                if label is None:
                    continue
                end = trans[i + 1]["at"] if i + 1 < len(trans) else None
                spans.append((t["at"], end, label, t))
            if not spans:
                continue
            for start, end, label, t in spans:
                hits = [e for e in by_key.get(rec["uid"], [])
                        if e["operation"] in CRYPTO_OPS and e["last_seen"] > start
                        and (end is None or e["first_seen"] < end)]
                if not hits:
                    continue
                who_ = sorted({e["principal"] for e in hits})
                ok = sum(e["count"] - e["failures"] for e in hits)
                failed = sum(e["failures"] for e in hits)
                yield Finding(
                    entity=f"{rec['uid']}|{start}",
                    first_seen=max(start, min(e["first_seen"] for e in hits)),
                    last_seen=max(e["last_seen"] for e in hits),
                    explanation=(
                        f"Key {rec['uid']} became {label} at {start} ({t['action']} by "
                        f"{t.get('by')}), yet {short_list(who_, 3)} kept using it: {ok} "
                        f"successful and {failed} refused crypto operations. Something still "
                        "depends on this key (outage risk), or someone is trying a key that "
                        "should be dead."),
                    evidence=[transition_evidence(t), *edge_evidence(hits, 9)],
                    event_count=ok + failed, key_uid=rec["uid"],
                    principal=who_[0] if len(who_) == 1 else None,
                    severity="high" if ok else None,
                    details={"state": label, "principals": who_,
                             "source_ips": sorted({ip for e in hits for ip in e["source_ips"]})})


class KeyNewPrincipal(InventoryDetector):
    """A principal performs crypto with a key it never used during the baseline window."""

    id: ClassVar[str] = "key_new_principal"

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"baseline_days": 14, "min_baseline_events": 50, "ignore_principals":
                ["*.amazonaws.com", "AWS Internal"], "peer_eps": 0.1}

    def evaluate(self, inventory: list[dict[str, Any]], edges: list[dict[str, Any]],
                 as_of: str) -> Iterable[Finding]:
        from detectors.peers import PeerGroups, usage_profiles

        p = self.params
        groups = PeerGroups(eps=p["peer_eps"]).fit(usage_profiles(edges, CRYPTO_OPS))
        for uid, es in sorted(key_edges(edges).items()):
            crypto = [e for e in es if e["operation"] in CRYPTO_OPS and e["count"] > e["failures"]]
            if not crypto:
                continue
            start = min(e["first_seen"] for e in crypto)
            by_p: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for e in crypto:
                by_p[principal_identity(e["principal"])].append(e)
            for principal, pe in sorted(by_p.items()):
                if principal == "unknown" or _globs(principal, p["ignore_principals"]):
                    continue
                first = min(e["first_seen"] for e in pe)
                if days_between(start, first) < p["baseline_days"]:
                    continue
                baseline = sum(e["count"] for e in crypto if e["first_seen"] < first)
                if baseline < p["min_baseline_events"]:
                    continue
                # Only an established user of the key vouches for a peer: one that used it on
                # several days before, never a one-off user (a break-glass access, another
                # newcomer).
                earlier = {q for q, qe in by_p.items()
                           if q != principal and len({e["window_start"][:10] for e in qe
                                                      if e["first_seen"] < first}) >= 3}
                # A new member of a peer group that already used the key: still a signal, the
                # alert tier keeps it out of the alerts (detectors.alerting).
                peer = next(((q, sim) for q, sim in groups.peers(principal) if q in earlier),
                            None)
                day = [e for e in pe if e["window_start"][:10] == first[:10]]
                yield Finding(
                    entity=f"{principal}|{uid}", first_seen=first,
                    last_seen=max(e["last_seen"] for e in day),
                    explanation=(
                        f"{principal} used key {uid} for the first time at {first} "
                        f"({', '.join(sorted({e['operation'] for e in day}))}); in the "
                        f"{days_between(start, first):.0f} days before, {baseline} operations "
                        "by other principals established who uses this key."),
                    evidence=edge_evidence(day), event_count=sum(e["count"] for e in day),
                    key_uid=uid, principal=principal,
                    details={"source_ips": sorted({ip for e in day for ip in e["source_ips"]}),
                             # the raw ids keep the role session name (a ticket, a runner id)
                             "principal_ids": sorted({e["principal"] for e in day})[:10],
                             **({"peer_of": peer[0], "peer_similarity": round(peer[1], 3),
                                 "peer_shared": groups.shared_features(principal, peer[0])}
                                if peer else {})})


class KeySeparationOfDuties(InventoryDetector):
    """The same principal administers and uses a key within one window."""

    id: ClassVar[str] = "key_separation_of_duties"

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"window_hours": 24, "ignore_principals": ["*.amazonaws.com", "AWS Internal"],
                "admin_operations": sorted(ADMIN_OPS - {"create"})}

    def evaluate(self, inventory: list[dict[str, Any]], edges: list[dict[str, Any]],
                 as_of: str) -> Iterable[Finding]:
        p = self.params
        admin_ops = set(p["admin_operations"])
        width = p["window_hours"] * 3_600_000
        for uid, es in sorted(key_edges(edges).items()):
            by_p: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for e in es:
                if e["count"] > e["failures"]:
                    by_p[principal_identity(e["principal"])].append(e)
            for principal, pe in sorted(by_p.items()):
                if principal == "unknown" or _globs(principal, p["ignore_principals"]):
                    continue
                admin = [e for e in pe if e["operation"] in admin_ops]
                use = [e for e in pe if e["operation"] in CRYPTO_OPS]
                pairs = [(a, u) for a in admin for u in use
                         if abs(epoch_ms(a["first_seen"]) - epoch_ms(u["first_seen"])) <= width]
                if not pairs:
                    continue
                a_es = sorted({id(a): a for a, _ in pairs}.values(), key=lambda e: e["first_seen"])
                u_es = sorted({id(u): u for _, u in pairs}.values(), key=lambda e: e["first_seen"])
                yield Finding(
                    entity=f"{principal}|{uid}",
                    first_seen=min(a_es[0]["first_seen"], u_es[0]["first_seen"]),
                    last_seen=max(e["last_seen"] for e in [*a_es, *u_es]),
                    explanation=(
                        f"{principal} both administered key {uid} "
                        f"({', '.join(sorted({e['operation'] for e in a_es}))}) and used it "
                        f"({', '.join(sorted({e['operation'] for e in u_es}))}) within "
                        f"{p['window_hours']} h. Separation of duties (NIST SP 800-57, PCI DSS "
                        "3.6) keeps key custodians and key users apart so one stolen identity "
                        "cannot both open access and use it."),
                    evidence=edge_evidence([*a_es, *u_es]),
                    event_count=sum(e["count"] for e in [*a_es, *u_es]),
                    key_uid=uid, principal=principal)


class KeyDormant(InventoryDetector):
    """An active key not used for crypto for a long time (candidate for disabling)."""

    id: ClassVar[str] = "key_dormant"

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        # HSM audit logs record management, not crypto use: dormancy cannot be observed there.
        return {"dormant_days": 90, "providers": ["aws_kms", "azure_keyvault",
                                                  "azure_managed_hsm", "vault_transit"]}

    def evaluate(self, inventory: list[dict[str, Any]], edges: list[dict[str, Any]],
                 as_of: str) -> Iterable[Finding]:
        for rec in inventory:
            if rec["state"] != "active" or rec.get("kind") != "key" or rec.get(
                    "provider") not in self.params["providers"]:
                continue
            last = (rec.get("last_used") or {}).get("crypto")
            since = last or rec.get("created_at")
            if not since or days_between(since, as_of) < self.params["dormant_days"]:
                continue
            idle = int(days_between(since, as_of))
            what = f"last crypto use {last}" if last else f"created {since} and never used"
            yield Finding(
                entity=rec["uid"], first_seen=since, last_seen=rec.get("last_seen") or since,
                explanation=(
                    f"Key {rec['uid']} is active but idle for {idle} days ({what}). Dormant "
                    "enabled keys widen the attack surface; disable them (reversible) and "
                    "schedule deletion once no owner claims them."),
                evidence=[Evidence(i, since, "", 0) for i in rec["evidence_event_ids"][:3]],
                event_count=0, key_uid=rec["uid"], details={"idle_days": idle})


class KeyUnknownAsset(InventoryDetector):
    """A key is used that was never created or otherwise known ("unknown crypto asset")."""

    id: ClassVar[str] = "key_unknown_asset"

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"coverage_grace_days": 7, "known_keys": []}

    def evaluate(self, inventory: list[dict[str, Any]], edges: list[dict[str, Any]],
                 as_of: str) -> Iterable[Finding]:
        p = self.params
        coverage: dict[str, str] = {}
        for rec in inventory:
            for ds in rec.get("datasets") or []:
                if rec["first_seen"] and (ds not in coverage or rec["first_seen"] < coverage[ds]):
                    coverage[ds] = rec["first_seen"]
        for rec in inventory:
            if rec.get("creation_observed") or rec.get("kind") != "key":
                continue
            if rec.get("transitions") or _globs(rec["uid"], p["known_keys"]):
                continue  # lifecycle seen (rotation, import...): the key is managed here
            usage = rec.get("usage_counts") or {}
            if not any(usage.get(op) for op in CRYPTO_OPS):
                continue
            start = min((coverage[d] for d in rec.get("datasets") or [] if d in coverage),
                        default=rec["first_seen"])
            if days_between(start, rec["first_seen"]) < p["coverage_grace_days"]:
                continue  # first days of log coverage: long-lived keys appear in use first
            yield Finding(
                entity=rec["uid"], first_seen=rec["first_seen"], last_seen=rec["last_seen"],
                explanation=(
                    f"Key {rec['uid']} appeared in use at {rec['first_seen']} "
                    f"({', '.join(f'{k} {v}' for k, v in sorted(usage.items()))}) although "
                    f"logs cover its provider since {start} and no creation, import or other "
                    "lifecycle event was ever recorded for it. An unknown cryptographic asset "
                    "is outside inventory, rotation and access review."),
                evidence=[Evidence(i, rec["first_seen"], "", 0)
                          for i in rec["evidence_event_ids"][:5]],
                event_count=sum(usage.values()), key_uid=rec["uid"],
                principal=rec["principals"][0] if len(rec["principals"]) == 1 else None)


class KeyExpiryApproaching(InventoryDetector):
    """A key (or its imported material) expires within the configured lead times."""

    id: ClassVar[str] = "key_expiry_approaching"

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"lead_days": [30, 7]}

    def evaluate(self, inventory: list[dict[str, Any]], edges: list[dict[str, Any]],
                 as_of: str) -> Iterable[Finding]:
        leads = sorted(int(d) for d in self.params["lead_days"])
        for rec in inventory:
            exp = rec.get("expires_at")
            if not exp or rec["state"] in ("destroyed",):
                continue
            left = days_between(as_of, exp)
            if left > leads[-1]:
                continue
            expired = left < 0
            sev = "high" if expired or left <= leads[0] else None
            lead = next(d for d in leads if left <= d)
            yield Finding(
                entity=f"{rec['uid']}|{exp}", first_seen=as_of, last_seen=as_of,
                explanation=(
                    f"Key {rec['uid']} " + (f"expired at {exp}" if expired else
                                            f"expires at {exp}, in {left:.1f} days")
                    + f" (lead time {lead} days). When it expires every operation with it "
                    "fails; rotate or re-import before then."),
                evidence=[Evidence(i, as_of, "", 0) for i in rec["evidence_event_ids"][:3]],
                event_count=0, key_uid=rec["uid"], severity=sev,
                details={"expires_at": exp, "days_left": round(left, 1)})
