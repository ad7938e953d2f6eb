"""`keytrail run`: the bounded Beam pipeline from raw logs to the local store.

Stages (each one named composite PTransform):
  ParseAndAggregate  input objects -> one mergeable RunState per bundle (events are
                     written to Parquet shards inside the stage, so memory never holds
                     the event stream)
  MergePartials      CombineGlobally into one RunState (keys, edges, resources, detector
                     buckets, alerts, accounting, event id index); combiner lifting
                     merges per bundle
  Finalize           duplicate deliveries dropped (pipelines.dedupe), inventory, graph,
                     window/inventory detectors, local store, report
The default runner is Beam's in-process FnApiRunner, chosen explicitly so a default run
never tries to download a runner binary; any other Beam runner is passed through unchanged.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.metrics.metric import Metrics
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.pipeline import Pipeline
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from parsers.escaping import terminal
from pipelines.config import KeytrailConfig
from pipelines.dedupe import drop_duplicates
from pipelines.detection import load_detection
from pipelines.finalize import finalize_state, merge_quarantine, write_local_store
from pipelines.loopback import bind_beam_services_to_loopback
from pipelines.outdir import claim_out_dir, ensure_dir, remove_owned
from pipelines.process import (
    EVENT_SHARD,
    EVENTS_DIR,
    QUARANTINE_DIR,
    QUARANTINE_SHARD,
    FileProcessor,
    shard_name,
    tune_gc,
)
from pipelines.sources import InputFile, report_skipped, scan_inputs
from pipelines.state import RunState


class ProcessFileFn(beam.DoFn):
    """Runs FileProcessor on each input object and folds the results per bundle.

    Folding inside the DoFn (one RunState per bundle, emitted in finish_bundle) keeps
    memory at O(keys + edges + windows) whatever the runner's fusion does, and sends one
    element per bundle instead of one per file across the shuffle.
    """

    def __init__(self, out_dir: str, config: KeytrailConfig, total: int, progress: bool) -> None:
        self.out_dir = out_dir
        self.config = config
        self.total = total
        self.progress = progress
        self._done = 0
        self._events = 0
        self._t0 = 0.0
        self._state: RunState | None = None

    def setup(self) -> None:
        tune_gc()
        self.processor = FileProcessor(self.out_dir, self.config.parse, self.config.graph_window,
                                       load_detection(self.config)[0], gate_windows=True)
        self._t0 = time.monotonic()

    def start_bundle(self) -> None:
        self._state = RunState()

    def process(self, f: InputFile) -> Iterator[RunState]:
        res = self.processor.process(f)
        Metrics.counter("keytrail", "events").inc(res.summary["events"])
        Metrics.counter("keytrail", "files").inc()
        self._done += 1
        self._events += res.summary["events"]
        if self.progress:
            rate = self._events / max(time.monotonic() - self._t0, 1e-6)
            print(f"\r[{self._done}/{self.total}] {self._events:,} events ({rate:,.0f}/s) "
                  f"{terminal(f.uri)[-50:]:<50}", end="", file=sys.stderr, flush=True)
        if self._state is None:
            self._state = RunState()
        self._state.absorb(res)
        return iter(())

    def finish_bundle(self) -> Iterator[WindowedValue]:
        if self._state is not None and self._state.files:
            yield WindowedValue(self._state, GlobalWindow().max_timestamp(), (GlobalWindow(),))
        self._state = None


class MergeResultsFn(beam.CombineFn):
    """Order-independent merge of per-bundle RunStates into one."""

    def create_accumulator(self) -> RunState:
        return RunState()

    def add_input(self, acc: RunState, res: RunState) -> RunState:
        return acc.absorb(res)

    def merge_accumulators(self, accs: Iterable[RunState]) -> RunState:
        out = RunState()
        for a in accs:
            out.absorb(a)
        return out

    def extract_output(self, acc: RunState) -> RunState:
        return acc


class ParseAndAggregate(beam.PTransform):  # type: ignore[type-arg]
    """Input objects -> per-bundle RunStates (events go to Parquet shards here)."""

    def __init__(self, out_dir: str, config: KeytrailConfig, total: int, progress: bool):
        super().__init__()
        self.fn = ProcessFileFn(out_dir, config, total, progress)

    def expand(self, files: Any) -> Any:
        return (files
                | "Spread" >> beam.Reshuffle()
                | "ParseFile" >> beam.ParDo(self.fn))


class MergePartials(beam.PTransform):  # type: ignore[type-arg]
    """FileResults -> the single merged RunState (keys, edges, buckets, alerts, accounting)."""

    def expand(self, results: Any) -> Any:
        # without_defaults: the default-for-empty-input step of CombineGlobally reads the
        # result back as a side input, one more stage that pickles the whole state across
        # processes (~1.5 s at 1M events). An empty run is seeded with an empty RunState
        # instead (run_batch).
        return results | "MergeAll" >> beam.CombineGlobally(MergeResultsFn()).without_defaults()


class FinalizeFn(beam.DoFn):
    """Merged state -> inventory, graph, alerts and every file of the local store."""

    def __init__(self, out_dir: str, config: KeytrailConfig, inputs: list[str],
                 shard_order: list[str], skipped: list[dict[str, str]] | None = None) -> None:
        self.out_dir = out_dir
        self.config = config
        self.inputs = inputs
        self.shard_order = shard_order
        self.skipped = skipped or []

    def process(self, st: RunState) -> Iterator[dict[str, Any]]:
        out = Path(self.out_dir)
        detection, inventory_dets = load_detection(self.config)
        # The same event delivered twice counts once: fold the dropped copies as the
        # ParseFile stage did (gated windows included) to retract them.
        drop_duplicates(st, out, FileProcessor(self.out_dir, self.config.parse,
                                               self.config.graph_window, detection,
                                               gate_windows=True))
        summary, outputs = finalize_state(st, self.config, detection, inventory_dets,
                                          self.inputs, out / EVENTS_DIR)
        summary["inputs_skipped"] = self.skipped
        merge_quarantine(out, self.shard_order)
        write_local_store(out, summary, *outputs)
        yield summary


def make_pipeline(beam_args: list[str], n_files: int = 1) -> Pipeline:
    """A Pipeline on Beam's in-process FnApiRunner unless --runner is given in beam_args.

    With several input files the in-process runner uses one SDK worker process per core
    (at most 2 by default; --direct_num_workers overrides): local subprocesses of this
    Python, never a downloaded runner binary. Every gRPC service Beam starts in this
    process (worker control/data/state/logging, the LOOPBACK worker pool of Flink runs)
    binds 127.0.0.1 only (pipelines/loopback.py).
    """
    bind_beam_services_to_loopback()
    if any(a.startswith("--runner") for a in beam_args):
        return Pipeline(options=PipelineOptions(beam_args))
    from apache_beam.runners.portability.fn_api_runner.fn_runner import FnApiRunner

    args = list(beam_args)
    workers = min(2, os.cpu_count() or 1)
    if n_files > 1 and workers > 1 and not any(a.startswith("--direct_num_workers")
                                               for a in args):
        args += [f"--direct_num_workers={workers}", "--direct_running_mode=multi_processing"]
    logging.getLogger("apache_beam").setLevel(logging.ERROR)
    return Pipeline(runner=FnApiRunner(), options=PipelineOptions(args))


def prepare_out_dir(out: Path) -> None:
    """A run rebuilds the store: stale event shards from earlier inputs must not survive.

    Only a new/empty directory or a keytrail store is used (pipelines.outdir), and only
    the shard files keytrail names are deleted; anything else in there is left alone.
    """
    claim_out_dir(out)
    for sub, pattern in ((EVENTS_DIR, EVENT_SHARD), (QUARANTINE_DIR, QUARANTINE_SHARD)):
        ensure_dir(out / sub)  # refuses a planted symlink before any worker writes there
        remove_owned(out / sub, pattern)


def run_batch(inputs: list[str], out_dir: str,
              config: KeytrailConfig | dict[str, Any] | None = None,
              beam_args: list[str] | None = None, progress: bool = False) -> dict[str, Any]:
    """Run the bounded pipeline; returns run_summary (also written to out_dir)."""
    from pipelines.config import parse_config

    if config is None:
        cfg = KeytrailConfig()
    elif isinstance(config, dict):
        cfg = parse_config(config)
    else:
        cfg = config
    files, skipped = scan_inputs(inputs)
    report_skipped(skipped)
    out = Path(out_dir)
    prepare_out_dir(out)
    load_detection(cfg)  # validate detector tuning before starting workers
    shard_order = [shard_name(f.uri) for f in files]
    with make_pipeline(beam_args or [], len(files)) as p:
        if files:
            partials = (p
                        | "Inputs" >> beam.Create(files)
                        | "ParseAndAggregate" >> ParseAndAggregate(str(out), cfg, len(files),
                                                                   progress))
        else:
            partials = p | "NoInputs" >> beam.Create([RunState()])
        _ = (partials
             | "MergePartials" >> MergePartials()
             | "Finalize" >> beam.ParDo(FinalizeFn(str(out), cfg, inputs, shard_order,
                                                          skipped)))
    if progress:
        print(file=sys.stderr)
    import orjson

    summary: dict[str, Any] = orjson.loads((out / "run_summary.json").read_bytes())
    return summary


