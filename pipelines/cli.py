"""The `keytrail` command line. Bad invocations print one line and exit non-zero."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import orjson

from parsers.base import KeytrailError
from parsers.escaping import json_line, terminal, terminal_text

# Exit codes (README "Exit codes"): a scheduler must be able to tell them apart.
EXIT_OK = 0  # the run completed and everything was delivered
EXIT_FAILED = 1  # the run failed (an unexpected error; nothing is known to be complete)
EXIT_USAGE = 2  # bad invocation, config or sink setup: one line says what to fix
EXIT_DEAD_LETTERED = 3  # the run completed, but some documents are only in dead letters
REPO_ROOT = Path(__file__).resolve().parents[1]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        where = f"keytrail {self.prog.split()[-1]}" if " " in self.prog else "keytrail"
        self.exit(EXIT_USAGE, f"keytrail: {message} (see '{where} --help')\n")


def default_inputs() -> list[str]:
    for cand in (Path("sample_logs"), REPO_ROOT / "sample_logs"):
        if cand.is_dir():
            return [str(cand)]
    raise KeytrailError("no INPUT given and no sample_logs/ directory here; pass files, "
                        "directories, globs or s3://bucket/prefix")


def _load_config(path: str | None) -> Any:
    from pipelines.config import load_config

    return load_config(path)


def cmd_run(args: argparse.Namespace, extra: list[str]) -> int:
    from pipelines import sinks
    from pipelines.run import run_batch
    from pipelines.store import write_json

    cfg = _load_config(args.config)
    args.config = cfg
    sinks.preflight(args)
    beam_args = list(extra)
    if args.runner:
        beam_args.insert(0, f"--runner={args.runner}")
    bad = [a for a in beam_args if not a.startswith("--")]
    if bad:
        raise KeytrailError(f"unexpected argument {bad[0]!r}: inputs go before options, Beam "
                            "options look like --name=value")
    inputs = args.inputs or default_inputs()
    progress = not args.quiet and sys.stderr.isatty()
    summary = run_batch(inputs, args.out, cfg, beam_args, progress=progress)
    delivered = sinks.deliver(args.out, args)
    if delivered:
        summary["sink"] = delivered
        write_json(Path(args.out) / "run_summary.json", summary)
    if not args.quiet:
        print(terminal_text(render_summary(summary, args.out)))
    dead = sum(int(c.get("dead_lettered", 0)) for c in delivered.values() if isinstance(c, dict))
    if dead:
        sent = sum(int(c.get("indexed", 0)) + int(c.get("updated", 0)) + int(c.get("failed", 0))
                   for c in delivered.values() if isinstance(c, dict))
        print(f"keytrail: run completed, but {dead:,} of {sent:,} documents were not "
              f"delivered and are in {delivered['dead_letter_path']}; once the engine is "
              f"back, run: {replay_command(args, str(delivered['dead_letter_path']))}",
              file=sys.stderr)
        return EXIT_DEAD_LETTERED
    return EXIT_OK


def replay_command(args: argparse.Namespace, path: str) -> str:
    """The `keytrail replay` line for these sink options (URL without credentials)."""
    from urllib.parse import urlsplit, urlunsplit

    from pipelines.sinks.settings import resolve

    s = resolve(args)
    u = urlsplit(s.url)
    url = urlunsplit(u._replace(netloc=u.hostname + (f":{u.port}" if u.port else ""))) \
        if u.hostname else s.url
    return (f"keytrail replay {shlex.quote(path)} --sink {s.kind} --sink-url "
            f"{shlex.quote(url)} --index-prefix {shlex.quote(s.prefix)}")


def render_summary(s: dict[str, Any], out: str) -> str:
    t = s["totals"]
    lines = [f"keytrail run: {len(s['files'])} files, {t['records_in']:,} records -> "
             f"{t['events']:,} events, {sum(t['skipped'].values()):,} skipped, "
             f"{sum(t['quarantined'].values()):,} quarantined (as of {s['as_of']})"]
    if s["events_by_dataset"]:
        lines.append("  events:      " + ", ".join(
            f"{k} {v:,}" for k, v in s["events_by_dataset"].items()))
    lines.append(f"  keys:        {s['keys']} (" + ", ".join(
        f"{k} {v}" for k, v in s["keys_by_state"].items()) + ")")
    lines.append(f"  overdue:     {s['keys_overdue']} keys past their cryptoperiod")
    lines.append(f"  graph:       {s['edges']:,} usage edges, "
                 f"{s['resource_edges']:,} key->resource")
    lines.append("  alerts:      " + ", ".join(f"{k} {v}" for k, v in s["alerts"].items()))
    if t["quarantined"]:
        lines.append("  quarantined: " + ", ".join(f"{k} {v}" for k, v in t["quarantined"].items())
                     + f" (see {out}/quarantine.ndjson)")
    for family, c in sorted((s.get("sink") or {}).items()):
        if isinstance(c, dict):
            lines.append(f"  sink {family + ':':<8} {c.get('indexed', 0):,} indexed, "
                         f"{c.get('updated', 0):,} updated, {c.get('failed', 0):,} failed, "
                         f"{c.get('dead_lettered', 0):,} dead-lettered")
    if (s.get("sink") or {}).get("dead_letter_path"):
        lines.append(f"  dead letters: {s['sink']['dead_letter_path']} "
                     "(send again with 'keytrail replay')")
    lines.append(f"  output:      {out}/ (report.html, inventory, edges, alerts, "
                 "run_summary.json)")
    return "\n".join(lines)


def cmd_parse(args: argparse.Namespace, extra: list[str]) -> int:
    from parsers.base import REGISTRY, Quarantined, Skipped
    from parsers.detect import parse_stream
    from parsers.framing import Tally
    from parsers.schema import KeyEvent
    from pipelines.sources import expand_inputs, open_input

    cfg = _load_config(args.config)
    parsers = REGISTRY.create_all(cfg.parse)
    out = sys.stdout
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()  # event ids so far: a repeated event counts once, as in `run`
    for f in expand_inputs(args.paths):
        counts: Counter[str] = Counter()
        skipped: Counter[str] = Counter()
        quar: Counter[str] = Counter()
        tally = Tally()  # records counted from the container, not from the outcomes
        with open_input(f) as stream:
            dataset, outcomes = parse_stream(stream, f.uri, parsers, tally)
            for o in outcomes:
                if isinstance(o, KeyEvent):
                    if o.event_id in seen:
                        counts["duplicates"] += 1
                        continue
                    seen.add(o.event_id)
                    counts["events"] += 1
                    if args.json:
                        out.write(json_line(o.to_flat()))
                    elif not args.summary_only:
                        out.write(f"{terminal(o.timestamp)}  {terminal(o.dataset):<22} "
                                  f"{terminal(o.action):<28} {terminal(o.outcome):<8} "
                                  f"{terminal(o.operation):<18} {terminal(o.key_uid or '-')}  "
                                  f"{terminal(o.user_id or '-')}\n")
                elif isinstance(o, Skipped):
                    skipped[o.reason] += 1
                elif isinstance(o, Quarantined):
                    quar[o.reason] += 1
                    if args.json:
                        out.write(json_line({"quarantined": o.to_dict()}))
        n = tally.records
        out_n = (counts["events"] + counts["duplicates"] + sum(skipped.values())
                 + sum(quar.values()))
        rows.append({"path": f.uri, "dataset": dataset, "records_in": n,
                     "accounting_ok": n == out_n,
                     "events": counts["events"], "duplicates": counts["duplicates"],
                     "skipped": dict(sorted(skipped.items())),
                     "quarantined": dict(sorted(quar.items()))})
    err = sys.stderr
    if args.json:
        err.write(json_line({"files": rows}))
    else:
        err.write(f"{'file':<60} {'dataset':<22} {'in':>7} {'events':>7} {'dup':>6} "
                  f"{'skip':>6} {'quar':>6}\n")
        for r in rows:
            err.write(f"{terminal(r['path'])[-60:]:<60} {r['dataset'] or 'unrecognized':<22} "
                      f"{r['records_in']:>7} {r['events']:>7} {r['duplicates']:>6} "
                      f"{sum(r['skipped'].values()):>6} {sum(r['quarantined'].values()):>6}"
                      f"{'' if r['accounting_ok'] else '  ACCOUNTING MISMATCH'}\n")
    return 0


def _read_store(out: str, name: str) -> Any:
    p = Path(out) / name
    if not p.exists():
        raise KeytrailError(f"{p} not found: run 'keytrail run --out {out}' first, or pass "
                            "--out pointing at an existing keytrail output directory")
    return orjson.loads(p.read_bytes())


def _remote(args: argparse.Namespace) -> bool:
    from pipelines.sinks.settings import resolve

    return resolve(args).remote


def cmd_inventory(args: argparse.Namespace, extra: list[str]) -> int:
    if _remote(args):
        from pipelines import sinks

        inv = sinks.read_inventory(args)
    else:
        inv = _read_store(args.out, "inventory.json")
    from dashboards import exports

    ephemeral = exports.ephemeral_summary(inv)
    inv = exports.filter_inventory(inv, overdue=args.overdue, state=args.state,
                                   provider=args.provider, kind=args.kind,
                                   include_ephemeral=args.include_ephemeral)
    if args.format == "csv":
        sys.stdout.write(exports.to_csv(inv))
    elif args.format == "json":
        sys.stdout.write(exports.to_json(inv))
    elif args.format == "cyclonedx":
        as_of = inv[0]["as_of"] if inv else "1970-01-01T00:00:00.000Z"
        sys.stdout.write(orjson.dumps(exports.to_cyclonedx(inv, as_of),
                                      option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(exports.table(inv))
        if not args.include_ephemeral:
            sys.stdout.write(exports.ephemeral_table(ephemeral))
    return 0


def cmd_alerts(args: argparse.Namespace, extra: list[str]) -> int:
    if _remote(args):
        from pipelines import sinks

        rows = sinks.read_alerts(args)
    else:
        p = Path(args.out) / ("signals.ndjson" if args.signals else "alerts.ndjson")
        if not p.exists():
            raise KeytrailError(f"{p} not found: run 'keytrail run --out {args.out}' first")
        rows = [orjson.loads(line) for line in p.read_bytes().splitlines() if line.strip()]
        if args.signals and args.signals != "all":
            rows = [a for a in rows if a.get("keytrail.signal.disposition") == args.signals]
    if args.severity:
        rows = [a for a in rows if a["keytrail.alert.severity"] == args.severity]
    if args.rule:
        rows = [a for a in rows if a["rule.id"] == args.rule]
    if args.json:
        for a in rows:
            sys.stdout.write(json_line(a))
        return 0
    for a in rows:
        t = {k: terminal(v) for k, v in a.items()}
        sys.stdout.write(f"{t['keytrail.alert.severity']:<8} {t['rule.id']:<36} "
                         f"{t['keytrail.alert.first_seen']}  x{t['keytrail.alert.event_count']:<5} "
                         f"{t.get('keytrail.key.uid') or t.get('user.id') or '-'}\n"
                         f"         {t['keytrail.alert.explanation']}\n")
        why = a.get("keytrail.alert.why") or (
            f"[{a['keytrail.signal.disposition']}] {a.get('keytrail.signal.reason') or ''}"
            if a.get("keytrail.signal.disposition") else "")
        if why:
            sys.stdout.write(f"         why: {terminal(why)}\n")
    return 0


def cmd_detectors(args: argparse.Namespace, extra: list[str]) -> int:
    from detectors import cli_support

    if args.action == "list":
        sys.stdout.write(terminal_text(cli_support.list_table()))
        return 0
    if args.action == "show":
        if not args.id:
            raise KeytrailError("keytrail detectors show needs a detector ID "
                                "(see 'keytrail detectors list')")
        sys.stdout.write(terminal_text(cli_support.show(args.id)))
        return 0
    notes = ""
    if args.config:
        # load_config validates the whole file (detector tuning and exceptions included) and
        # raises with every problem, each naming the key and the fix.
        cfg = _load_config(args.config)
        notes = (f"config {args.config}: detector tuning valid\n"
                 + cli_support.tuning_notes(cfg.detectors, cfg.as_of))
    ok, report = cli_support.run_cases(args.id)
    sys.stdout.write(terminal_text(report + notes))
    return 0 if ok else 1


def cmd_generate(args: argparse.Namespace, extra: list[str]) -> int:
    from pipelines.generate import generate

    summary = generate(args.out, seed=args.seed, days=args.days, scale=args.scale)
    print(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
    return 0


def cmd_eval(args: argparse.Namespace, extra: list[str]) -> int:
    from pipelines.evaluate import run_eval

    ok, table = run_eval(args.data, args.out, seeds=args.seeds, days=args.days,
                         scale=args.scale, config=_load_config(args.config))
    print(table)
    return 0 if ok else 1


def cmd_watch(args: argparse.Namespace, extra: list[str]) -> int:
    from pipelines.outdir import claim_out_dir
    from pipelines.watch import Watcher, make_sources

    cfg = _load_config(args.config)
    sources = make_sources(args.sources, args.settle, args.start_after)
    claim_out_dir(Path(args.out))
    args.config = cfg
    from pipelines import sinks
    from pipelines.sinks.engine import EngineUnreachable
    from pipelines.watch import SearchWatchSink

    try:
        sinks.preflight(args)
    except EngineUnreachable as exc:  # a daemon waits for its engine; setup errors still stop
        logging.getLogger("keytrail.watch").warning("%s; watching anyway, delivering when it "
                                                    "answers", exc)
    sink = SearchWatchSink(args, Path(args.state) / "alert_journal.json") if _remote(
        args) else None
    w = Watcher(sources, args.out, args.state, cfg, interval=args.interval, quiet=args.quiet,
                **({"sink": sink} if sink else {}))
    last = w.run(once=args.once)
    if last is not None and last.engine_down:
        print("keytrail: the engine did not acknowledge the cycle; nothing was committed, "
              "the next watch delivers it", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Callable[..., int]]]:
    from pipelines.sinks import add_cli
    from pipelines.sinks.settings import sink_options

    ap = _Parser(prog="keytrail", description="Key-management audit logs -> key inventory, "
                 "usage graph and alerts.")
    sub = ap.add_subparsers(dest="command", required=True, parser_class=_Parser)
    handlers: dict[str, Callable[..., int]] = {}

    r = sub.add_parser("run", help="run the batch pipeline (default input: sample_logs/)")
    r.add_argument("inputs", nargs="*", help="files, directories, globs or s3://bucket/prefix")
    r.add_argument("--out", default="keytrail-out", help="output directory (local store)")
    r.add_argument("--config", help="YAML config file")
    r.add_argument("--runner", help="Beam runner (default: in-process); other Beam options "
                   "such as --flink_master=... are passed through")
    r.add_argument("-q", "--quiet", action="store_true")
    r.add_argument("-v", "--verbose", action="store_true",
                   help="log details, including the search client's own messages")
    sink_options(r)
    handlers["run"] = cmd_run

    w = sub.add_parser("watch", help="follow directories, growing files and s3:// prefixes")
    w.add_argument("sources", nargs="+", help="directories, files or s3://bucket/prefix")
    w.add_argument("--out", default="keytrail-out")
    w.add_argument("--state", required=True, help="state directory (checkpoints + partials)")
    w.add_argument("--interval", type=float, default=5.0, help="seconds between cycles")
    w.add_argument("--settle", type=float, default=2.0,
                   help="a file unchanged this long is read to its end")
    w.add_argument("--start-after", help="S3 key below which everything is processed")
    w.add_argument("--once", action="store_true", help="run one cycle and exit")
    w.add_argument("--config")
    w.add_argument("-q", "--quiet", action="store_true")
    w.add_argument("-v", "--verbose", action="store_true",
                   help="log details, including the search client's own messages")
    sink_options(w)
    handlers["watch"] = cmd_watch

    p = sub.add_parser("parse", help="parse files and print normalized events + accounting "
                       "(an event repeated in the files given is printed and counted once)")
    p.add_argument("paths", nargs="+")
    p.add_argument("--json", action="store_true", help="NDJSON events on stdout")
    p.add_argument("--summary-only", action="store_true")
    p.add_argument("--config")
    handlers["parse"] = cmd_parse

    i = sub.add_parser("inventory", help="show or export the key inventory of a run")
    i.add_argument("--out", default="keytrail-out")
    i.add_argument("--format", choices=["table", "csv", "json", "cyclonedx"], default="table")
    i.add_argument("--overdue", action="store_true")
    i.add_argument("--state")
    i.add_argument("--provider")
    i.add_argument("--kind")
    i.add_argument("--include-ephemeral", action="store_true",
                   help="list session (ephemeral) keys one by one instead of summarising them")
    i.add_argument("--config")
    sink_options(i)
    handlers["inventory"] = cmd_inventory

    a = sub.add_parser("alerts", help="show alerts of a run")
    a.add_argument("--out", default="keytrail-out")
    a.add_argument("--severity", choices=["low", "medium", "high", "critical"])
    a.add_argument("--rule")
    a.add_argument("--json", action="store_true")
    a.add_argument("--signals", nargs="?", const="all",
                   choices=["all", "alert", "exception", "ephemeral_key", "ticketed", "routine",
                            "low_risk"],
                   help="show signals (every detection) instead of alerts, optionally only "
                        "one disposition (local store)")
    a.add_argument("--config")
    sink_options(a)
    handlers["alerts"] = cmd_alerts

    d = sub.add_parser("detectors", help="list, show or test detectors")
    d.add_argument("action", choices=["list", "show", "test"])
    d.add_argument("id", nargs="?")
    d.add_argument("--config", help="also validate this config's detector tuning and exceptions")
    handlers["detectors"] = cmd_detectors

    g = sub.add_parser("generate", help="write realistic labelled multi-provider logs")
    g.add_argument("--out", required=True)
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--days", type=int, default=30)
    g.add_argument("--scale", type=float, default=1.0)
    handlers["generate"] = cmd_generate

    e = sub.add_parser("eval", help="measure detector precision/recall on generated scenarios")
    e.add_argument("--data", help="existing generated directory (default: generate fresh)")
    e.add_argument("--out", default="keytrail-eval")
    e.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    e.add_argument("--days", type=int, default=30)
    e.add_argument("--scale", type=float, default=0.3)
    e.add_argument("--config")
    handlers["eval"] = cmd_eval
    add_cli(sub, handlers)
    return ap, handlers


def main(argv: list[str] | None = None) -> int:
    ap, handlers = build_parser()
    args, extra = ap.parse_known_args(argv)
    if extra and args.command != "run":
        ap.error(f"unrecognized arguments: {' '.join(extra)}")
    verbose = bool(getattr(args, "verbose", False))
    from pipelines import logs

    logs.configure(verbose)
    try:
        return handlers[args.command](args, extra)
    except KeytrailError as exc:
        print(f"keytrail: {terminal(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # one line, not a traceback (--verbose: both)
        if verbose:
            traceback.print_exc()
        print(f"keytrail: {args.command} failed: {type(exc).__name__}: {str(exc)[:500]}"
              + ("" if verbose else " (--verbose shows the traceback)"), file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("keytrail: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
