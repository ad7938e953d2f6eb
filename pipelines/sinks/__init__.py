"""Search-engine sinks: deliver the local store to Elasticsearch / OpenSearch, set them up,
replay dead letters, and read inventory and alerts back for auditors.

The CLI wires this package through `sink_options`, `add_cli`, `deliver`, `read_inventory`
and `read_alerts`; everything engine-specific stays behind `make_sink`.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import orjson

from dashboards.fields import index_name
from dashboards.generate import generate
from parsers.base import KeytrailError
from parsers.scrub import scrub_text
from pipelines.sinks.dashboards_install import install_saved_objects
from pipelines.sinks.documents import (
    Action,
    alert_record,
    inventory_record,
    store_actions,
)
from pipelines.sinks.engine import (
    DeliveryReport,
    EngineError,
    RetriableError,
    RetryPolicy,
    SearchSink,
    SinkError,
    read_dead_letters,
)
from pipelines.sinks.settings import SinkSettings, resolve, sink_options
from pipelines.sinks.setup import install, missing_templates

__all__ = [
    "DeliveryReport",
    "SinkError",
    "SinkSettings",
    "add_cli",
    "deliver",
    "make_sink",
    "read_alerts",
    "read_inventory",
    "replay",
    "resolve",
    "sink_options",
]

DEAD_LETTER_NAME: Final[str] = "dead_letter.ndjson"
SEVERITY_RANK: Final[dict[str, int]] = {"critical": 0, "high": 1, "medium": 2, "low": 3}


def make_sink(settings: SinkSettings, **kw: Any) -> SearchSink:
    """The engine sink for remote settings (`kw` tunes batching/retries, for tests)."""
    kw.setdefault("retry", RetryPolicy(max_retries=settings.max_retries))
    if settings.kind == "opensearch":
        from pipelines.sinks.opensearch import OpenSearchSink

        return OpenSearchSink(settings, **kw)
    if settings.kind == "elasticsearch":
        from pipelines.sinks.elasticsearch import ElasticsearchSink

        return ElasticsearchSink(settings, **kw)
    raise KeytrailError(f"sink {settings.kind!r} is not a search engine; pass --sink "
                        "elasticsearch or --sink opensearch")


def _open(args_or_cfg: Any, **kw: Any) -> tuple[SinkSettings, SearchSink]:
    settings = resolve(args_or_cfg)
    if not settings.remote:
        raise KeytrailError("this command needs a search engine: pass --sink opensearch or "
                            "--sink elasticsearch with --sink-url")
    sink = make_sink(settings, **kw)
    sink.check()
    return settings, sink


def preflight(args_or_cfg: Any) -> None:
    """Fail fast, before a long run, when the configured engine is unreachable or not set up."""
    settings = resolve(args_or_cfg)
    if not settings.remote:
        return
    sink = make_sink(settings)
    try:
        sink.check()
        missing = missing_templates(sink)
        if missing:
            raise SinkError(f"index template {missing[0]} is not installed on {settings.url}: "
                            f"run 'keytrail setup --sink {settings.kind} --sink-url "
                            f"{settings.url}' first")
    finally:
        sink.close()


def deliver(out_dir: str, args_or_cfg: Any, shards: list[Path] | None = None,
            withdrawn_alerts: list[str] | None = None, dead_letter: Path | None = None,
            **kw: Any) -> dict[str, Any]:
    """Push a whole local store into the configured engine.

    Returns per index family {indexed, updated, failed, dead_lettered, retried} plus
    `dead_letter_path` (None when nothing was dead-lettered); `{}` for the local sink.
    Raises SinkError (one line) when the engine is unreachable or not set up.
    """
    settings = resolve(args_or_cfg)
    if not settings.remote:
        return {}
    out = Path(out_dir)
    sink = make_sink(settings, **kw)
    try:
        sink.check()
        missing = missing_templates(sink)
        if missing:
            raise SinkError(f"index template {missing[0]} is not installed on {settings.url}: "
                            f"run 'keytrail setup --sink {settings.kind} --sink-url "
                            f"{settings.url}' first")
        dlq = dead_letter or (Path(settings.dead_letter) if settings.dead_letter
                              else out / DEAD_LETTER_NAME)
        actions = store_actions(out, settings.prefix, shards)
        if withdrawn_alerts:
            target = index_name("alerts", settings.prefix)
            deletes = [Action("alerts", "delete", target, aid, {}) for aid in withdrawn_alerts]
            actions = itertools.chain(actions, deletes)
        report = sink.deliver(actions, dlq)
        _refresh(sink, settings.prefix)
    finally:
        sink.close()
    return report.as_dict()


def _refresh(sink: SearchSink, prefix: str) -> None:
    """Make the run searchable at once for auditors (best effort: a least-privilege
    writer may lack the refresh privilege, and the engine refreshes within a second)."""
    with contextlib.suppress(EngineError, RetriableError):
        sink.request("POST", f"/{prefix}-*/_refresh")


def replay(dlq_path: str | Path, sink: SearchSink) -> dict[str, Any]:
    """Send dead letters again. What still fails is written back to `dlq_path` (the file is
    removed when everything got through), so replay can be repeated until it is empty."""
    path = Path(dlq_path)
    actions: list[Action] = list(read_dead_letters(path))
    retry = path.with_name(path.name + ".retry")
    retry.unlink(missing_ok=True)
    report = sink.deliver(actions, retry)
    if retry.exists():
        retry.replace(path)
        report.dead_letter_path = str(path)
    else:
        path.unlink()
    return report.as_dict()


def _read_back(settings: SinkSettings, sink: SearchSink, family: str,
               sort_field: str) -> list[dict[str, Any]]:
    """Every document of one index family; an engine error is one clear SinkError."""
    index = index_name(family, settings.prefix)
    try:
        return list(sink.search_all(index, sort_field))
    except (RetriableError, EngineError) as exc:
        busy = exc.status == 429 or (exc.status or 0) >= 500
        hint = ("the engine is overloaded or failing; try again later" if busy else
                "check --index-prefix and the user's read privilege on the index")
        status = f"HTTP {exc.status}" if exc.status else "no answer"
        raise SinkError(f"reading {index} from {sink.engine} at {settings.url} failed "
                        f"({status}: {scrub_text(exc.reason)[:200]}); {hint}") from None
    finally:
        sink.close()


def read_inventory(args_or_cfg: Any) -> list[dict[str, Any]]:
    """The inventory as stored in the engine, in the local store's record shape."""
    settings, sink = _open(args_or_cfg)
    return [inventory_record(d) for d in _read_back(settings, sink, "inventory",
                                                     "keytrail.key.uid")]


def read_alerts(args_or_cfg: Any) -> list[dict[str, Any]]:
    """Alerts as stored in the engine (flat ECS names, as in alerts.ndjson), severest first."""
    settings, sink = _open(args_or_cfg)
    rows = [alert_record(d) for d in _read_back(settings, sink, "alerts", "keytrail.alert.id")]
    rows.sort(key=lambda a: (SEVERITY_RANK.get(a.get("keytrail.alert.severity") or "", 9),
                             a.get("keytrail.alert.first_seen") or "",
                             a["keytrail.alert.id"]))
    return rows


# --- CLI --------------------------------------------------------------------------------

Handler = Callable[[argparse.Namespace, list[str]], int]


def _print_report(title: str, report: dict[str, Any]) -> None:
    print(title)
    for family, c in report.items():
        if isinstance(c, dict):
            print(f"  {family:<10} indexed {c['indexed']:>8,}  updated {c['updated']:>8,}  "
                  f"failed {c['failed']:>6,}  dead-lettered {c['dead_lettered']:>6,}")
    if report.get("dead_letter_path"):
        print(f"  dead letters: {report['dead_letter_path']} (send again with 'keytrail "
              f"replay {report['dead_letter_path']} --sink ...')")


def cmd_setup(args: argparse.Namespace, extra: list[str]) -> int:
    settings = resolve(args)
    if not settings.remote:
        raise KeytrailError("keytrail setup needs --sink opensearch or --sink elasticsearch "
                            "and --sink-url")
    sink = make_sink(settings)
    try:
        lines = install(sink, retention_days=args.retention_days,
                        roles_out=Path(args.roles_out) if args.roles_out else None)
    finally:
        sink.close()
    print("\n".join(lines))
    return 0


def cmd_replay(args: argparse.Namespace, extra: list[str]) -> int:
    _settings, sink = _open(args)
    try:
        report = replay(args.dead_letters, sink)
    finally:
        sink.close()
    _print_report(f"keytrail replay: {args.dead_letters}", report)
    failed = sum(c["failed"] for c in report.values() if isinstance(c, dict))
    return 1 if failed else 0


def cmd_dashboards(args: argparse.Namespace, extra: list[str]) -> int:
    if args.action == "generate":
        changed = generate(check=args.check)
        if args.check and changed:
            print("keytrail: generated files are stale: " + ", ".join(changed)
                  + " (run 'keytrail dashboards generate')", file=sys.stderr)
            return 1
        for c in changed:
            print(f"wrote {c}")
        return 0
    if not args.kibana_url:
        raise KeytrailError("keytrail dashboards install needs --kibana-url URL (Kibana or "
                            "OpenSearch Dashboards)")
    results = install_saved_objects(args)
    for line in results:
        print(line)
    return 0


def add_cli(subparsers: Any, handlers: dict[str, Handler]) -> None:
    """Register `setup`, `replay` and `dashboards` on the keytrail command line."""
    s = subparsers.add_parser("setup", help="install index templates, lifecycle policy and "
                              "roles on Elasticsearch / OpenSearch")
    sink_options(s, with_local=False)
    s.add_argument("--retention-days", type=int, default=400,
                   help="delete event indices after this many days (ILM/ISM)")
    s.add_argument("--roles-out", help="where to write role definitions when the engine has "
                   "no security API (default: ./keytrail-roles)")
    handlers["setup"] = cmd_setup

    r = subparsers.add_parser("replay", help="send dead-lettered documents again")
    r.add_argument("dead_letters", help="dead-letter file (e.g. keytrail-out/dead_letter.ndjson)")
    sink_options(r, with_local=False)
    handlers["replay"] = cmd_replay

    d = subparsers.add_parser("dashboards", help="generate or install dashboards")
    d.add_argument("action", choices=["install", "generate"])
    d.add_argument("--kibana-url", help="Kibana (or OpenSearch Dashboards) URL")
    d.add_argument("--opensearch-dashboards", action="store_true",
                   help="the URL is OpenSearch Dashboards (osd-xsrf, dashboards/opensearch/)")
    d.add_argument("--space", help="Kibana space id (default space when absent)")
    d.add_argument("--check", action="store_true",
                   help="with generate: fail when the checked-in files are stale")
    sink_options(d, with_local=False)
    handlers["dashboards"] = cmd_dashboards


def dumps_report(report: dict[str, Any]) -> str:
    return orjson.dumps(report, option=orjson.OPT_SORT_KEYS).decode()
