"""`keytrail eval`: precision / recall of the detectors on `keytrail generate` output.

An alert is a true positive when a labelled scenario lists its rule (in `detectors`, the
ones that must fire, or `also`, consequences that may fire: a disabled key also produces
refused decrypts), one of the scenario's `match` tokens occurs in the alert's entity, key
or principal, and the alert's time span overlaps the scenario's (with one hour of slack,
and a day for inventory-derived alerts whose window is a day). Recall counts only the
`detectors` of each scenario. Every other alert is a false positive; false positives are
also reported per 100k benign events.

`run_in_memory` parses the generated files with the real parsers and runs the in-memory
reference runner (detectors.testing), for use until / besides the Beam pipeline.
"""

from __future__ import annotations

import gzip
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from detectors.catalog import all_ids, load_detectors
from detectors.common import epoch_ms
from detectors.testing import run_detection
from parsers.base import ParseOptions
from parsers.detect import parse_bytes
from parsers.schema import KeyEvent

SLACK_MS = 3_600_000


def load_labels(data_dir: str) -> dict[str, Any]:
    return dict(orjson.loads((Path(data_dir) / "labels.json").read_bytes()))


def iter_events(data_dir: str) -> Iterator[KeyEvent]:
    """Parse every generated log file (not labels.json) with the real parsers."""
    opts = ParseOptions()
    for p in sorted(Path(data_dir).rglob("*")):
        if not p.is_file() or p.name == "labels.json":
            continue
        data = p.read_bytes()
        if p.suffix == ".gz":
            data = gzip.decompress(data)
        _, outcomes = parse_bytes(data, str(p.relative_to(data_dir)), opts)
        for o in outcomes:
            if isinstance(o, KeyEvent):
                yield o


def run_in_memory(data_dir: str, tuning: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Alert-tier alerts of the reference runner over the generated data (as_of = latest
    event)."""
    return run_detection(iter_events(data_dir), load_detectors(tuning),
                         tiers=(tuning or {}).get("alerting") or {})


def _ms(ts: str) -> int:
    t = ts if "." in ts else ts.replace("Z", ".000Z")
    return epoch_ms(t)


def alert_rules(alert: dict[str, Any]) -> list[str]:
    """The rules behind an alert: its own, or every contributing rule of an incident."""
    return list(alert.get("keytrail.alert.rules") or [alert["rule.id"]])


def _matches(alert: dict[str, Any], sc: dict[str, Any], rule: str) -> bool:
    if rule not in sc["detectors"] and rule not in sc.get("also", []):
        return False
    hay = " ".join(str(alert.get(k) or "") for k in (
        "keytrail.alert.entity", "keytrail.key.uid", "user.id"))
    if not any(tok in hay for tok in sc["match"]):
        return False
    a0 = _ms(alert["keytrail.alert.first_seen"])
    a1 = _ms(alert["keytrail.alert.last_seen"])
    s0 = _ms(sc["start"]) - SLACK_MS
    s1 = _ms(sc["end"]) + SLACK_MS + 86_400_000
    return a0 <= s1 and a1 >= s0


def evaluate(data_dir: str, alerts: list[dict[str, Any]], labels: dict[str, Any]
             ) -> dict[str, Any]:
    """Per-detector and per-scenario precision/recall and false positives per 100k benign."""
    scenarios = labels["scenarios"]
    tp: dict[str, int] = defaultdict(int)
    fp: dict[str, int] = defaultdict(int)
    fp_alerts: list[dict[str, Any]] = []
    hit: dict[tuple[str, str], int] = defaultdict(int)
    total_tp = 0
    for a in alerts:
        any_match = False
        for rule in alert_rules(a):
            matched = [sc for sc in scenarios if _matches(a, sc, rule)]
            if matched:
                any_match = True
                tp[rule] += 1
                for sc in matched:
                    hit[(sc["scenario"], rule)] += 1
            else:
                fp[rule] += 1
        total_tp += any_match
        if not any_match:
            fp_alerts.append({k: a.get(k) for k in (
                "rule.id", "keytrail.alert.entity", "keytrail.alert.first_seen",
                "keytrail.alert.explanation", "keytrail.alert.why")})
    expected: dict[str, int] = defaultdict(int)
    found: dict[str, int] = defaultdict(int)
    per_scenario = []
    for sc in scenarios:
        got = [d for d in sc["detectors"] if hit[(sc["scenario"], d)]]
        for d in sc["detectors"]:
            expected[d] += 1
            found[d] += bool(hit[(sc["scenario"], d)])
        per_scenario.append({
            "scenario": sc["scenario"], "type": sc["type"], "expected": sc["detectors"],
            "detected": got, "missed": [d for d in sc["detectors"] if d not in got],
            "recall": len(got) / len(sc["detectors"]),
            "also_fired": sorted(d for d in sc.get("also", []) if hit[(sc["scenario"], d)]),
        })
    per_detector = []
    # Every registered detector gets a row, with zeros when it neither fired nor was expected.
    for d in sorted(set(tp) | set(fp) | set(expected) | set(all_ids())):
        alerts_d = tp[d] + fp[d]
        per_detector.append({
            "detector": d, "alerts": alerts_d, "true_positive_alerts": tp[d],
            "false_positive_alerts": fp[d],
            "precision": tp[d] / alerts_d if alerts_d else None,
            "scenarios_expected": expected[d], "scenarios_detected": found[d],
            "recall": found[d] / expected[d] if expected[d] else None,
        })
    benign = int(labels.get("benign_events") or 0)
    n_exp = sum(expected.values())
    total = len(alerts)
    return {
        "data_dir": data_dir, "seed": labels.get("seed"), "scale": labels.get("scale"),
        "days": labels.get("days"), "benign_events": benign,
        "attack_events": labels.get("attack_events"),
        "per_detector": per_detector, "per_scenario": per_scenario,
        "totals": {
            "alerts": total, "true_positive_alerts": total_tp,
            "false_positive_alerts": total - total_tp,
            "precision": total_tp / total if total else None,
            "recall": sum(found.values()) / n_exp if n_exp else None,
            "fp_per_100k_benign": (total - total_tp) / benign * 1e5 if benign else None,
        },
        "false_positives": fp_alerts[:50],
    }


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def format_eval_table(result: dict[str, Any]) -> str:
    """Human-readable tables: per detector, per scenario, totals."""
    lines = [f"keytrail eval: {result['data_dir']} (seed {result['seed']}, scale "
             f"{result['scale']}, {result['days']} days, {result['benign_events']} benign and "
             f"{result['attack_events']} attack events)", "",
             f"{'detector':42} {'alerts':>6} {'TP':>5} {'FP':>4} {'prec':>5} {'scen':>5} "
             f"{'found':>5} {'recall':>6}"]
    for r in result["per_detector"]:
        lines.append(f"{r['detector']:42} {r['alerts']:6d} {r['true_positive_alerts']:5d} "
                     f"{r['false_positive_alerts']:4d} {_f(r['precision']):>5} "
                     f"{r['scenarios_expected']:5d} {r['scenarios_detected']:5d} "
                     f"{_f(r['recall']):>6}")
    lines += ["", f"{'scenario':48} {'recall':>6}  missed / also fired"]
    for s in result["per_scenario"]:
        extra = ", ".join(s["missed"]) + (" | also: " + ", ".join(s["also_fired"])
                                          if s["also_fired"] else "")
        lines.append(f"{s['scenario']:48} {_f(s['recall']):>6}  {extra}")
    t = result["totals"]
    lines += ["", f"TOTAL alerts {t['alerts']}  TP {t['true_positive_alerts']}  FP "
              f"{t['false_positive_alerts']}  precision {_f(t['precision'])}  recall "
              f"{_f(t['recall'])}  FP per 100k benign events {_f(t['fp_per_100k_benign'])}"]
    for fpa in result["false_positives"][:10]:
        lines.append(f"  FP {fpa['rule.id']} {fpa['keytrail.alert.entity']} "
                     f"{fpa['keytrail.alert.first_seen']}")
    return "\n".join(lines) + "\n"


def format_combined(results: list[dict[str, Any]]) -> str:
    """Per-detector alert-tier numbers summed over several seeds (the closing table)."""
    agg: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    benign = sum(int(r["benign_events"] or 0) for r in results)
    for r in results:
        for d in r["per_detector"]:
            a = agg[d["detector"]]
            for i, k in enumerate(("alerts", "true_positive_alerts", "false_positive_alerts",
                                   "scenarios_expected", "scenarios_detected")):
                a[i] += d[k]
    lines = [f"over {len(results)} seeds ({benign} benign events), alert tier:",
             f"{'detector':42} {'alerts':>6} {'TP':>5} {'FP':>4} {'prec':>5} {'scen':>5} "
             f"{'found':>5} {'recall':>6} {'FP/100k':>7}"]
    for d, (n, tp, fp, e, f) in sorted(agg.items()):
        lines.append(f"{d:42} {n:6d} {tp:5d} {fp:4d} {_f(tp / n if n else None):>5} {e:5d} "
                     f"{f:5d} {_f(f / e if e else None):>6} "
                     f"{_f(fp / benign * 1e5 if benign else None):>7}")
    n = sum(int(r["totals"]["alerts"]) for r in results)
    fp = sum(int(r["totals"]["false_positive_alerts"]) for r in results)
    e = sum(a[3] for a in agg.values())
    f = sum(a[4] for a in agg.values())
    lines.append(f"{'ALL':42} {n:6d} {n - fp:5d} {fp:4d} {_f((n - fp) / n if n else None):>5} "
                 f"{e:5d} {f:5d} {_f(f / e if e else None):>6} "
                 f"{_f(fp / benign * 1e5 if benign else None):>7}")
    return "\n".join(lines)


def log_inputs(data_dir: str) -> list[str]:
    """The generated log files/directories of a data dir (everything except labels.json)."""
    return sorted(str(p) for p in Path(data_dir).iterdir() if p.name != "labels.json")


def run_eval(data_dir: str | None, out_dir: str, seeds: list[int], days: int, scale: float,
             config: Any = None) -> tuple[bool, str]:
    """Generate (unless data_dir is given), run the real pipeline, score; (targets met, text).

    Targets (issue 4): recall >= 0.95, precision >= 0.9, <= 1 FP per 100k benign events.
    """
    from pipelines.generate import generate
    from pipelines.run import run_batch

    runs = [(data_dir, None)] if data_dir else [
        (str(Path(out_dir) / f"seed-{s}" / "logs"), s) for s in seeds]
    texts: list[str] = []
    ok = True
    rows: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    results: list[dict[str, Any]] = []
    for ddir, seed in runs:
        assert ddir is not None
        if seed is not None:
            generate(ddir, seed=seed, days=days, scale=scale)
        store = str(Path(ddir).parent / "store") if seed is not None else str(
            Path(out_dir) / "store")
        run_batch(log_inputs(ddir), store, config)
        alerts = [orjson.loads(line) for line in
                  (Path(store) / "alerts.ndjson").read_bytes().splitlines() if line]
        labels = load_labels(ddir)
        result = evaluate(ddir, alerts, labels)
        t = result["totals"]
        met = ((t["recall"] or 0) >= 0.95 and (t["precision"] or 0) >= 0.9
               and (t["fp_per_100k_benign"] or 0) <= 1.0)
        ok = ok and met
        sig_path = Path(store) / "signals.ndjson"
        signals = [orjson.loads(line) for line in sig_path.read_bytes().splitlines()
                   if line] if sig_path.exists() else []
        st = evaluate(ddir, signals, labels)["totals"]
        rows.append((ddir, t, st))
        results.append(result)
        texts.append(format_eval_table(result))
    summary = [f"{'run':50} {'alerts':>6} {'precision':>9} {'recall':>6} {'FP/100k':>8}   "
               f"{'signals':>7} {'sig.prec':>8} {'sig.FP/100k':>11}"]
    for ddir, t, st in rows:
        summary.append(f"{ddir[-50:]:50} {t['alerts']:6d} {_f(t['precision']):>9} "
                       f"{_f(t['recall']):>6} {_f(t['fp_per_100k_benign']):>8}   "
                       f"{st['alerts']:7d} {_f(st['precision']):>8} "
                       f"{_f(st['fp_per_100k_benign']):>11}")
    if len(results) > 1:
        summary = [format_combined(results), "", *summary]
    summary.append("targets met" if ok else "TARGETS NOT MET (recall >= 0.95, precision >= 0.9, "
                   "<= 1 FP per 100k benign events)")
    return ok, "\n".join(texts) + "\n" + "\n".join(summary)
