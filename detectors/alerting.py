"""The second detection tier: every detection is a signal; this module decides which become
alerts (DESIGN.md section 7), and says why for each.

Order of decisions for one signal (the first that applies wins; the signal is always kept):
1. user exception (`detectors.<id>.exceptions`, allow-lists, suppressions) -> `exception`;
2. the key is ephemeral (an HSM session key created and destroyed by its application within
   its lifetime bound, see detectors.inventory.key_class) -> `ephemeral_key`;
3. the access names a change/incident ticket (break-glass with a ticket) -> `ticketed`;
4. the identity is a new member of a peer group that already did this (detectors.peers), or
   triggered the same rule on `routine_min_days` distinct days, starting in the rule's
   learning period (else on twice as many days) -> `routine` (a schedule: nightly backups,
   deploy rollouts, IaC runs, a tokenization service);
5. risk below `min_alert_risk` -> `low_risk`, unless the identity never triggered the rule
   during the rule's learning period (first-seen) -> promoted to an alert;
6. otherwise -> `alert`.
Rules whose YAML says `alert_tier: always` skip 2-5 (audit logging turned off, a key
opened to the world, posture findings): only a user exception keeps them from alerting.
Low-risk signals left over are grouped per identity and UTC day; two or more distinct
rules make one `keytrail_incident` alert with every contributing signal as evidence.
"""

from __future__ import annotations

import fnmatch
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from detectors.common import days_between, epoch_ms, principal_identity
from parsers.base import stable_id

INCIDENT_RULE: Final[str] = "keytrail_incident"
DISPOSITIONS: Final[tuple[str, ...]] = (
    "alert", "exception", "ephemeral_key", "ticketed", "routine", "low_risk", "incident")
WEEKDAYS: Final[tuple[str, ...]] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DEFAULT_TICKET: Final[str] = r"\b(?:CHG|INC|RITM|REQ|SR|CR)\d{5,}\b|\b[A-Z][A-Z0-9]{1,9}-\d{2,}\b"


@dataclass(frozen=True)
class AlertPolicy:
    """Tier parameters (user config `detectors.alerting`)."""

    min_alert_risk: int = 40
    routine_min_days: int = 3
    learning_days: int = 7
    incident_min_rules: int = 2
    ticket_pattern: str = DEFAULT_TICKET

    @staticmethod
    def defaults() -> dict[str, Any]:
        p = AlertPolicy()
        return {"min_alert_risk": p.min_alert_risk, "routine_min_days": p.routine_min_days,
                "learning_days": p.learning_days, "incident_min_rules": p.incident_min_rules,
                "ticket_pattern": p.ticket_pattern}


def _identity(sig: dict[str, Any]) -> str:
    """Who a signal is about, for baselines and grouping: the principal, else the key,
    else the entity."""
    return principal_identity(sig.get("user.id")) if sig.get("user.id") else str(
        sig.get("keytrail.key.uid") or sig["keytrail.alert.entity"])


def _day(ts: str) -> str:
    return ts[:10]


# --- exceptions ------------------------------------------------------------------------------

def _schedule_ok(spec: str, ts: str) -> bool:
    """'mon-fri 01:00-03:00', 'daily 22:00-02:00', 'sat,sun' (UTC); True when ts falls in it."""
    dt = datetime.fromtimestamp(epoch_ms(ts) / 1000, UTC)
    days_part, _, hours = spec.strip().lower().partition(" ")
    if ":" in days_part and not hours:
        days_part, hours = "daily", days_part
    if days_part != "daily":
        allowed: set[int] = set()
        for part in days_part.split(","):
            a, _, b = part.partition("-")
            ia, ib = WEEKDAYS.index(a[:3]), WEEKDAYS.index((b or a)[:3])
            allowed.update(range(ia, ib + 1) if ia <= ib else [*range(ia, 7), *range(0, ib + 1)])
        if dt.weekday() not in allowed:
            return False
    if hours:
        h0, _, h1 = hours.partition("-")
        m = dt.hour * 60 + dt.minute
        lo = int(h0[:2]) * 60 + int(h0[3:5])
        hi = int(h1[:2]) * 60 + int(h1[3:5])
        return lo <= m < hi if lo <= hi else (m >= lo or m < hi)
    return True


def schedule_error(spec: Any) -> str | None:
    """Why `spec` is not a schedule, or None."""
    if not isinstance(spec, str):
        return f"expected a string like 'mon-fri 01:00-03:00', got {spec!r}"
    try:
        _schedule_ok(spec, "2025-01-06T00:00:00.000Z")
    except (ValueError, IndexError):
        return (f"{spec!r} is not a schedule; write days and/or an UTC time range, e.g. "
                "'mon-fri 01:00-03:00', 'daily 22:00-02:00' or 'sat,sun'")
    return None


def exception_matches(exc: dict[str, Any], sig: dict[str, Any]) -> bool:
    """One user exception against one signal (every field given must match)."""
    if exc.get("expires") and sig["keytrail.alert.first_seen"][:10] > str(exc["expires"]):
        return False  # expired exceptions stop suppressing; `detectors test` warns
    principal = sig.get("user.id") or ""
    if exc.get("principal") and not (
            fnmatch.fnmatchcase(principal, exc["principal"])
            or fnmatch.fnmatchcase(principal_identity(principal), exc["principal"])):
        return False
    if exc.get("key") and not fnmatch.fnmatchcase(str(sig.get("keytrail.key.uid") or ""),
                                                  exc["key"]):
        return False
    if exc.get("entity") and not fnmatch.fnmatchcase(sig["keytrail.alert.entity"],
                                                     exc["entity"]):
        return False
    return not (exc.get("schedule") and not _schedule_ok(
        exc["schedule"], sig["keytrail.alert.first_seen"]))


def _filtered(sig: dict[str, Any], meta: Any) -> str | None:
    """Reason when the user's allow-lists / suppressions / exceptions cover the signal."""
    for exc in getattr(meta, "exceptions", None) or []:
        if exception_matches(exc, sig):
            until = f", until {exc['expires']}" if exc.get("expires") else ""
            return f"user exception: {exc.get('reason', 'no reason given')}{until}"
    allow = getattr(meta, "allow", None) or {}
    principal = sig.get("user.id") or ""
    if principal and any(fnmatch.fnmatchcase(principal, g) for g in allow.get("principals", [])):
        return f"allow-listed principal {principal}"
    key = sig.get("keytrail.key.uid") or ""
    if key and any(fnmatch.fnmatchcase(key, g) for g in allow.get("keys", [])):
        return f"allow-listed key {key}"
    ips = [str(i) for i in (sig.get("keytrail.alert.details") or {}).get("source_ips", [])]
    if ips and allow.get("source_ips"):
        from detectors.catalog import _ip_allowed
        if all(_ip_allowed(ip, allow["source_ips"]) for ip in ips):
            return "every source IP is allow-listed"
    for rule in getattr(meta, "suppress", None) or []:
        values = _signal_fields(sig).get(rule["field"], [])
        if values and all(fnmatch.fnmatchcase(v, rule["value"]) for v in values):
            return f"suppressed: {rule['field']} matches {rule['value']}"
    return None


def _signal_fields(sig: dict[str, Any]) -> dict[str, list[str]]:
    details = sig.get("keytrail.alert.details") or {}
    out: dict[str, list[str]] = {
        "user.id": [sig["user.id"]] if sig.get("user.id") else [],
        "keytrail.key.uid": [sig["keytrail.key.uid"]] if sig.get("keytrail.key.uid") else [],
        "keytrail.alert.entity": [sig["keytrail.alert.entity"]],
        "source.ip": [str(ip) for ip in details.get("source_ips", [])],
    }
    for k, v in details.items():
        out[f"details.{k}"] = [str(x) for x in v] if isinstance(v, list) else [str(v)]
    return out


# --- the tier ----------------------------------------------------------------------------------

def schedule_text(hours: set[int], days: list[str]) -> str:
    """How a recurring behaviour is scheduled, for the analyst: weekdays and UTC hours."""
    wd = sorted({datetime.strptime(d, "%Y-%m-%d").replace(tzinfo=UTC).weekday() for d in days})
    if len(wd) == 7:
        when = "every day of the week"
    elif wd == [0, 1, 2, 3, 4]:
        when = "on weekdays"
    else:
        when = "on " + ", ".join(WEEKDAYS[w].capitalize() for w in wd)
    hs = sorted(h for h in hours if h >= 0)
    at = ("throughout the day" if -1 in hours or not hs else
          f"at {hs[0]:02d}:xx UTC" if len(hs) == 1 else
          f"between {hs[0]:02d}:00 and {hs[-1]:02d}:59 UTC" if hs[-1] - hs[0] <= 3 else
          f"at {len(hs)} different hours")
    return f"{when}, {at}"


def _suppress_hint(sig: dict[str, Any]) -> str:
    rule = sig["rule.id"]
    who = principal_identity(sig.get("user.id")) if sig.get("user.id") else None
    target = f"principal: '{who}'" if who else (
        f"key: '{sig['keytrail.key.uid']}'" if sig.get("keytrail.key.uid") else
        f"entity: '{sig['keytrail.alert.entity']}'")
    return (f"If this is expected, add to the config: detectors: {{{rule}: {{exceptions: "
            f"[{{{target}, reason: '<why>', expires: '<YYYY-MM-DD>'}}]}}}}; the detection "
            "then stays a signal with its evidence.")


def _ticket(sig: dict[str, Any], pattern: re.Pattern[str]) -> str | None:
    details = sig.get("keytrail.alert.details") or {}
    hay = [str(sig.get("user.id") or ""), *[str(x) for x in details.get("principal_ids", [])]]
    for h in hay:
        m = pattern.search(h)
        if m:
            return m.group(0)
    return None


def _routine(days: set[str], first: str, rule_start: str, policy: AlertPolicy) -> bool:
    """Recurring on routine_min_days distinct days, and either already happening in the
    rule's learning period (a job that predates the watch) or recurring twice as often (a job
    that started later): three isolated days of an intruder who started mid-way are not
    enough."""
    if len(days) < policy.routine_min_days:
        return False
    return (days_between(rule_start, first) < policy.learning_days
            or len(days) >= 2 * policy.routine_min_days)


def classify(signals: list[dict[str, Any]], inventory: list[dict[str, Any]],
             metas: dict[str, Any], policy: AlertPolicy) -> list[dict[str, Any]]:
    """Annotate every signal with `keytrail.signal.disposition` and `keytrail.signal.reason`
    (a new dict each); order and content otherwise unchanged."""
    key_class = {r["uid"]: r for r in inventory if r.get("key_class") == "ephemeral"}
    days: dict[tuple[str, str], set[str]] = defaultdict(set)
    hours: dict[tuple[str, str], set[int]] = defaultdict(set)
    rule_start: dict[str, str] = {}
    first_by_ident: dict[tuple[str, str], str] = {}
    for s in signals:
        k = (s["rule.id"], _identity(s))
        days[k].add(_day(s["keytrail.alert.first_seen"]))
        hours[k].add(int(s["keytrail.alert.first_seen"][11:13]))
        if epoch_ms(s["keytrail.alert.last_seen"]) - epoch_ms(
                s["keytrail.alert.first_seen"]) >= 6 * 3_600_000:
            hours[k].add(-1)  # one signal covers most of a day: an all-day service
        fs = s["keytrail.alert.first_seen"]
        rule_start[s["rule.id"]] = min(rule_start.get(s["rule.id"], fs), fs)
        first_by_ident[k] = min(first_by_ident.get(k, fs), fs)
    ticket_re = re.compile(policy.ticket_pattern)
    # Key-side routine (baseline_by: key): distinct days on which the key gained a signal of
    # the rule that no other reason explains (tickets and ephemeral keys do not count).
    key_days: dict[tuple[str, str], set[str]] = defaultdict(set)
    for s in signals:
        uid = str(s.get("keytrail.key.uid") or "")
        if uid and "key" in getattr(metas.get(s["rule.id"]), "baseline_by", []) and (
                uid not in key_class and not _ticket(s, ticket_re)):
            key_days[(s["rule.id"], uid)].add(_day(s["keytrail.alert.first_seen"]))
    out = []
    for s in signals:
        meta = metas.get(s["rule.id"])
        always = getattr(meta, "alert_tier", "baseline") == "always"
        k = (s["rule.id"], _identity(s))
        disposition, reason = "alert", ""
        filt = _filtered(s, meta)
        eph = key_class.get(str(s.get("keytrail.key.uid") or ""))
        ticket = None if always else _ticket(s, ticket_re)
        if filt:
            disposition, reason = "exception", filt
        elif eph is not None and not always:
            disposition = "ephemeral_key"
            reason = (f"{s['keytrail.key.uid']} is an ephemeral key: created "
                      f"{eph.get('created_at')} and destroyed {eph['lifetime_seconds']:.0f} s "
                      f"later by {eph.get('created_by')}; session keys are routine")
        elif ticket:
            disposition, reason = "ticketed", f"the access names ticket {ticket}"
        elif not always and (s.get("keytrail.alert.details") or {}).get("peer_of"):
            d = s["keytrail.alert.details"]
            disposition = "routine"
            reason = (f"{k[1]} belongs to the peer group of {d['peer_of']}, which used this key "
                      f"before (cosine similarity {d.get('peer_similarity')} over what they do: "
                      f"{', '.join(d.get('peer_shared') or [])})")
        elif not always and _routine(days[k], first_by_ident[k], rule_start[k[0]], policy):
            ds = sorted(days[k])
            disposition = "routine"
            reason = (f"{k[1]} triggers {k[0]} routinely: on {len(ds)} distinct days "
                      f"({ds[0]} .. {ds[-1]}), {schedule_text(hours[k], ds)}")
        elif not always and len(key_days.get((s["rule.id"], str(s.get("keytrail.key.uid"))),
                                             ())) >= policy.routine_min_days:
            ds = sorted(key_days[(s["rule.id"], str(s.get("keytrail.key.uid")))])
            disposition = "routine"
            reason = (f"key {s['keytrail.key.uid']} routinely gains new identities of its "
                      f"kind ({k[0]} on {len(ds)} distinct days, {ds[0]} .. {ds[-1]}): a "
                      "rotating population such as CI runners or pod identities")
        elif not always and int(s["keytrail.alert.risk_score"]) < policy.min_alert_risk:
            start = rule_start[s["rule.id"]]
            learned = days_between(start, first_by_ident[k]) < policy.learning_days
            if learned:
                disposition = "low_risk"
                reason = (f"risk {s['keytrail.alert.risk_score']} below "
                          f"{policy.min_alert_risk} and {k[1]} was already doing this in "
                          f"the rule's {policy.learning_days}-day learning period from {start}")
            else:
                reason = (f"first time {k[1]} triggered {k[0]}: not seen during the "
                          f"{policy.learning_days}-day learning period from {start}")
        out.append({**s, "keytrail.signal.disposition": disposition,
                    "keytrail.signal.reason": reason})
    return out


def _why(s: dict[str, Any], always: bool) -> str:
    base = s.get("keytrail.signal.reason") or ""
    if always:
        return "rule alerts on every detection (alert_tier: always). " + base
    if base:
        return base + "."
    return (f"risk {s['keytrail.alert.risk_score']} is at or above the alert threshold and the "
            "behaviour is not routine for this identity (seen on fewer days than the routine "
            "bound, no ephemeral key, no ticket, no exception).")


def _ref(s: dict[str, Any]) -> dict[str, Any]:
    return {"id": s["keytrail.alert.id"], "rule.id": s["rule.id"],
            "risk_score": s["keytrail.alert.risk_score"],
            "disposition": s["keytrail.signal.disposition"],
            "first_seen": s["keytrail.alert.first_seen"]}


def promote(classified: list[dict[str, Any]], metas: dict[str, Any], policy: AlertPolicy
            ) -> list[dict[str, Any]]:
    """Alerts from classified signals: single high-confidence alerts and grouped incidents.

    Each alert lists the signals of the same identity and day as related evidence
    (`keytrail.alert.signals`), says why it fired and how to suppress it.
    """
    by_group: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for s in classified:
        by_group[(_identity(s), _day(s["keytrail.alert.first_seen"]))].append(s)
    alerts: list[dict[str, Any]] = []
    for s in classified:
        if s["keytrail.signal.disposition"] != "alert":
            continue
        a = {k: v for k, v in s.items() if not k.startswith("keytrail.signal.")}
        group = by_group[(_identity(s), _day(s["keytrail.alert.first_seen"]))]
        always = getattr(metas.get(s["rule.id"]), "alert_tier", "baseline") == "always"
        a["keytrail.alert.rules"] = [s["rule.id"]]
        a["keytrail.alert.signals"] = [_ref(x) for x in sorted(
            group, key=lambda x: (x["keytrail.alert.first_seen"], x["keytrail.alert.id"]))]
        a["keytrail.alert.why"] = _why(s, always)
        a["keytrail.alert.suppress_with"] = _suppress_hint(s)
        alerts.append(a)
    for (ident, day), group in sorted(by_group.items()):
        low = [s for s in group if s["keytrail.signal.disposition"] == "low_risk"]
        rules = sorted({s["rule.id"] for s in low})
        if len(rules) < policy.incident_min_rules or any(
                s["keytrail.signal.disposition"] == "alert" for s in group):
            continue
        low.sort(key=lambda x: (x["keytrail.alert.first_seen"], x["keytrail.alert.id"]))
        risk = min(100, sum(max(int(s["keytrail.alert.risk_score"]) for s in low
                                if s["rule.id"] == r) for r in rules))
        evidence = sorted({e["event.id"]: e for s in low for e in s["keytrail.alert.evidence"]
                           }.values(), key=lambda e: (e["@timestamp"], e["event.id"]))[:20]
        first = low[0]
        alerts.append({
            "keytrail.alert.id": stable_id("incident", ident, day),
            "@timestamp": max(s["keytrail.alert.last_seen"] for s in low),
            "rule.id": INCIDENT_RULE, "rule.name": "Correlated low-risk signals",
            "rule.version": 1,
            "rule.description": "Several low-risk detections about one identity in one day.",
            "event.severity_label": "medium", "keytrail.alert.severity": "medium",
            "keytrail.alert.risk_score": risk,
            "threat.technique": [t for s in low for t in s["threat.technique"]][:5],
            "keytrail.alert.entity": ident, "keytrail.key.uid": first.get("keytrail.key.uid"),
            "user.id": first.get("user.id"),
            "keytrail.alert.first_seen": first["keytrail.alert.first_seen"],
            "keytrail.alert.last_seen": max(s["keytrail.alert.last_seen"] for s in low),
            "keytrail.alert.window_start": f"{day}T00:00:00.000Z",
            "keytrail.alert.event_count": sum(s["keytrail.alert.event_count"] for s in low),
            "keytrail.alert.evidence": evidence,
            "keytrail.alert.explanation": f"{len(rules)} different low-risk detections about "
            f"{ident} on {day}: " + "; ".join(s["keytrail.alert.explanation"] for s in low[:5]),
            "keytrail.alert.status": "open",
            "keytrail.alert.runbook": "Review each contributing signal (keytrail.alert.signals)"
            "; together they describe one actor's day.",
            "keytrail.alert.details": {"rules": rules},
            "keytrail.alert.rules": rules,
            "keytrail.alert.signals": [_ref(s) for s in low],
            "keytrail.alert.why": f"{len(rules)} distinct rules ({', '.join(rules)}) fired "
            f"for {ident} on {day}; each alone is below the alert threshold.",
            "keytrail.alert.suppress_with": "Suppress the contributing rules for this identity "
            "(detectors.<rule>.exceptions) or raise detectors.alerting.incident_min_rules.",
        })
    return alerts


def two_tiers(signals: list[dict[str, Any]], inventory: list[dict[str, Any]],
              metas: dict[str, Any], policy: AlertPolicy
              ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(classified signals, alerts), both in the input order of `signals`."""
    classified = classify(signals, inventory, metas, policy)
    return classified, promote(classified, metas, policy)
