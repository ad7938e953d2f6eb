"""`keytrail run`: the bounded Beam pipeline from raw logs to the local store.

Stages (each one named composite PTransform):
  ParseAndAggregate  input objects -> per-file partials (events are written to Parquet
                     shards inside the stage, so memory never holds the event stream)
  MergePartials      CombinePerKey over keys, edges, resources, detector buckets, alerts
  Finalize           inventory, graph, window/inventory detectors, local store, report
The default runner is Beam's in-process FnApiRunner, chosen explicitly so a default run
never tries to download a runner binary; any other Beam runner is passed through unchanged.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.pipeline import Pipeline
from apache_beam.metrics.metric import Metrics
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.pvalue import AsList, AsSingleton, TaggedOutput
from apache_beam.transforms.combiners import ToList

from detectors.base import merge_alerts
from pipelines.config import KeytrailConfig
from pipelines.detection import load_detection
from pipelines.finalize import (
    build_outputs,
    merge_quarantine,
    resolve_as_of,
    summarize,
    write_local_store,
)
from pipelines.process import EVENTS_DIR, QUARANTINE_DIR, FileProcessor, shard_name
from pipelines.sources import InputFile, expand_inputs

TAGS = ("key", "edge", "resource", "bucket", "alert")


class ProcessFileFn(beam.DoFn):
    """Runs FileProcessor on one input object; emits tagged, mergeable partials."""

    def __init__(self, out_dir: str, config: KeytrailConfig, total: int, progress: bool) -> None:
        self.out_dir = out_dir
        self.config = config
        self.total = total
        self.progress = progress
        self._done = 0
        self._events = 0
        self._t0 = 0.0

    def setup(self) -> None:
        self.processor = FileProcessor(self.out_dir, self.config.parse, self.config.graph_window,
                                       load_detection(self.config)[0])
        self._t0 = time.monotonic()

    def process(self, f: InputFile) -> Iterator[Any]:
        res = self.processor.process(f)
        Metrics.counter("keytrail", "events").inc(res.summary["events"])
        Metrics.counter("keytrail", "files").inc()
        self._done += 1
        self._events += res.summary["events"]
        if self.progress:
            rate = self._events / max(time.monotonic() - self._t0, 1e-6)
            print(f"\r[{self._done}/{self.total}] {self._events:,} events ({rate:,.0f}/s) "
                  f"{f.uri[-50:]:<50}", end="", file=sys.stderr, flush=True)
        yield {"summary": res.summary, "max_ts": res.max_ts}
        for uid, acc in res.keys.items():
            yield TaggedOutput("key", (uid, acc))
        for ek, ea in res.edges.items():
            yield TaggedOutput("edge", (ek, ea))
        for rk, ra in res.resources.items():
            yield TaggedOutput("resource", (rk, ra))
        for bk, b in res.buckets.items():
            yield TaggedOutput("bucket", (bk, b))
        for aid, alert in res.alerts.items():
            yield TaggedOutput("alert", (aid, alert))


class MergeFn(beam.CombineFn):
    """Order-independent merge of partials that have a `merge` method (or alerts)."""

    def create_accumulator(self) -> Any:
        return None

    def add_input(self, acc: Any, item: Any) -> Any:
        if acc is None:
            return item
        if isinstance(acc, dict):
            return merge_alerts(acc, item)
        return acc.merge(item)

    def merge_accumulators(self, accs: Iterable[Any]) -> Any:
        out = None
        for a in accs:
            if a is not None:
                out = self.add_input(out, a)
        return out

    def extract_output(self, acc: Any) -> Any:
        return acc


class ParseAndAggregate(beam.PTransform):  # type: ignore[type-arg]
    def __init__(self, out_dir: str, config: KeytrailConfig, total: int, progress: bool):
        super().__init__()
        self.fn = ProcessFileFn(out_dir, config, total, progress)

    def expand(self, files: Any) -> Any:
        return (files
                | "Spread" >> beam.Reshuffle()
                | "ParseFile" >> beam.ParDo(self.fn).with_outputs(*TAGS, main="files"))


class MergePartials(beam.PTransform):  # type: ignore[type-arg]
    def __init__(self, tag: str) -> None:
        super().__init__()
        self.tag = tag

    def expand(self, pcoll: Any) -> Any:
        return (pcoll
                | f"Merge_{self.tag}" >> beam.CombinePerKey(MergeFn())
                | f"All_{self.tag}" >> ToList())


class FinalizeFn(beam.DoFn):
    def __init__(self, out_dir: str, config: KeytrailConfig, inputs: list[str],
                 shard_order: list[str]) -> None:
        self.out_dir = out_dir
        self.config = config
        self.inputs = inputs
        self.shard_order = shard_order

    def process(self, _: Any, files: list[dict[str, Any]], keys: list[Any], edges: list[Any],
                resources: list[Any], buckets: list[Any], alerts: list[Any]) -> Iterator[Any]:
        out = Path(self.out_dir)
        detection, inventory_dets = load_detection(self.config)
        file_rows = sorted((f["summary"] for f in files), key=lambda s: s["path"])
        max_ts = max((f["max_ts"] for f in files if f["max_ts"]), default=None)
        as_of = resolve_as_of(self.config, max_ts)
        inventory, edge_rows, res_rows, alert_rows = build_outputs(
            dict(_flat(keys)), dict(_flat(edges)), dict(_flat(resources)), dict(_flat(buckets)),
            dict(_flat(alerts)), self.config, detection, inventory_dets, as_of)
        merge_quarantine(out, self.shard_order)
        summary = summarize(file_rows, inventory, edge_rows, res_rows, alert_rows, as_of,
                            self.inputs)
        write_local_store(out, summary, inventory, edge_rows, res_rows, alert_rows)
        yield summary


def _flat(items: list[Any]) -> Iterator[tuple[Any, Any]]:
    for k, v in items:
        yield (tuple(k) if isinstance(k, list) else k), v


def make_pipeline(beam_args: list[str]) -> Pipeline:
    """A Pipeline on the in-process runner unless --runner is given in beam_args."""
    options = PipelineOptions(beam_args)
    if any(a.startswith("--runner") for a in beam_args):
        return Pipeline(options=options)
    from apache_beam.runners.portability.fn_api_runner.fn_runner import FnApiRunner

    return Pipeline(runner=FnApiRunner(), options=options)


def prepare_out_dir(out: Path) -> None:
    """A run rebuilds the store: stale event shards from earlier inputs must not survive."""
    out.mkdir(parents=True, exist_ok=True)
    for sub in (EVENTS_DIR, QUARANTINE_DIR):
        shutil.rmtree(out / sub, ignore_errors=True)


def run_batch(inputs: list[str], out_dir: str, config: KeytrailConfig | dict[str, Any] | None = None,
              beam_args: list[str] | None = None, progress: bool = False) -> dict[str, Any]:
    """Run the bounded pipeline; returns run_summary (also written to out_dir)."""
    from pipelines.config import parse_config

    if config is None:
        cfg = KeytrailConfig()
    elif isinstance(config, dict):
        cfg = parse_config(config)
    else:
        cfg = config
    files = expand_inputs(inputs)
    out = Path(out_dir)
    prepare_out_dir(out)
    load_detection(cfg)  # validate detector tuning before starting workers
    shard_order = [shard_name(f.uri) for f in files]
    with make_pipeline(beam_args or []) as p:
        results = (p
                   | "Inputs" >> beam.Create(files)
                   | "ParseAndAggregate" >> ParseAndAggregate(str(out), cfg, len(files), progress))
        merged = {t: results[t] | f"MergePartials_{t}" >> MergePartials(t) for t in TAGS}
        _ = (p
             | "Once" >> beam.Create([None])
             | "Finalize" >> beam.ParDo(
                 FinalizeFn(str(out), cfg, inputs, shard_order),
                 AsList(results.files),
                 *(AsSingleton(merged[t]) for t in TAGS)))
    if progress:
        print(file=sys.stderr)
    import orjson

    summary: dict[str, Any] = orjson.loads((out / "run_summary.json").read_bytes())
    return summary


