"""A key's lifecycle history is bounded per key and independent of merge order."""

from __future__ import annotations

import random

from detectors.inventory import HISTORY_HEAD, HISTORY_TAIL, KeyAccumulator, build_inventory_record
from parsers.base import stable_id
from parsers.schema import KeyEvent, new_event

UID = "aws:kms:111122223333:us-east-1:key/k1"


def _ev(i: int, op: str, action: str) -> KeyEvent:
    ts = f"2026-01-{1 + i // 1440 % 28:02d}T{i // 60 % 24:02d}:{i % 60:02d}:00.000Z"
    return new_event(timestamp=ts, event_id=stable_id("e", i), dataset="aws.cloudtrail",
                     provider="aws", action=action, outcome="success", operation=op,
                     log_file_path=f"f{i % 7}", log_offset=i, key_uid=UID,
                     user_id="arn:aws:iam::111122223333:role/admin")


def _events() -> list[KeyEvent]:
    evs = [_ev(0, "create", "CreateKey")]
    evs += [_ev(i, "update_policy", "PutKeyPolicy") for i in range(1, 3000)]
    evs.append(_ev(3000, "disable", "DisableKey"))
    return evs


def _fold(events: list[KeyEvent], parts: int, seed: int) -> KeyAccumulator:
    rng = random.Random(seed)
    shuffled = events[:]
    rng.shuffle(shuffled)
    accs = [KeyAccumulator(UID) for _ in range(parts)]
    for i, ev in enumerate(shuffled):
        accs[i % parts].add(ev)
    rng.shuffle(accs)
    out = accs[0]
    for a in accs[1:]:
        out.merge(a)
    return out


def test_history_is_bounded_and_merge_order_does_not_matter() -> None:
    events = _events()
    results = []
    for parts, seed in ((1, 0), (3, 1), (8, 2), (8, 3)):
        acc = _fold(events, parts, seed)
        rec = build_inventory_record(acc, "2026-02-01T00:00:00.000Z")
        assert len(acc.history) == HISTORY_HEAD + HISTORY_TAIL
        results.append((sorted(acc.history), rec))
    assert all(r == results[0] for r in results[1:])
    rec = results[0][1]
    assert rec["history_truncated"] is True
    # Creation (earliest) and the latest state change survive the bound.
    assert rec["created_at"] == "2026-01-01T00:00:00.000Z"
    assert rec["state"] == "suspended" or rec["substate"] == "disabled"


def test_short_history_is_complete() -> None:
    acc = KeyAccumulator(UID)
    for ev in _events()[:50]:
        acc.add(ev)
    rec = build_inventory_record(acc, "2026-02-01T00:00:00.000Z")
    assert len(acc.history) == 50 and rec["history_truncated"] is False


def test_edge_ips_and_bucket_values_do_not_depend_on_order() -> None:
    from detectors.base import MAX_BUCKET_VALUES, Bucket
    from detectors.graph import MAX_IPS, EdgeAccumulator

    events = [_ev(i, "decrypt", "Decrypt") for i in range(400)]
    for i, ev in enumerate(events):
        ev.source_ip = f"10.0.{i % 97}.{i % 13}"
    outs = []
    for seed in range(4):
        rng = random.Random(seed)
        order = events[:]
        rng.shuffle(order)
        edges = [EdgeAccumulator() for _ in range(1 + seed)]
        buckets = [Bucket("2026-01-01T00:00:00.000Z") for _ in range(1 + seed)]
        for i, ev in enumerate(order):
            edges[i % len(edges)].add(ev)
            buckets[i % len(buckets)].add(ev, {"ip": ev.source_ip})
        e, b = edges[0], buckets[0]
        for other in edges[1:]:
            e.merge(other)
        for ob in buckets[1:]:
            b.merge(ob)
        assert len(e.source_ips) == MAX_IPS and len(b.values["ip"]) == MAX_BUCKET_VALUES
        outs.append((sorted(e.source_ips), sorted(b.values["ip"])))
    assert all(o == outs[0] for o in outs)


def test_principal_sample_does_not_depend_on_order(monkeypatch: object) -> None:
    import detectors.inventory as inv

    monkeypatch.setattr(inv, "MAX_PRINCIPALS", 30)  # type: ignore[attr-defined]
    events = [_ev(i, "decrypt", "Decrypt") for i in range(300)]
    for i, ev in enumerate(events):
        ev.user_id = f"arn:aws:iam::111122223333:role/r{(i * 7919) % 211:03d}"
    kept = []
    for parts, seed in ((1, 0), (4, 1), (7, 2)):
        acc = _fold(events, parts, seed)
        assert len(acc.principals) == 30
        kept.append(sorted(acc.principals))
    assert kept[0] == kept[1] == kept[2]
