"""`keytrail parse` on a directory of mixed families: per-file detection and accounting."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.golden_util import REPO, SAMPLES

FAMILY = {"aws_cloudtrail": {"aws.cloudtrail"}, "azure_keyvault": {"azure.keyvault"},
          "hashicorp_vault": {"hashicorp_vault.audit"},
          "hsm": {"hsm.cloudhsm", "hsm.luna", "hsm.nshield"}}


def test_parse_detects_each_files_format_by_content() -> None:
    r = subprocess.run([sys.executable, "-m", "pipelines.cli", "parse", str(SAMPLES), "--json"],
                       cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    files = json.loads(r.stderr.strip().splitlines()[-1])["files"]
    assert len(files) == len([p for p in SAMPLES.rglob("*") if p.is_file()
                              and p.name != "README.md"])
    seen = set()
    for f in files:
        family = f["path"].split("sample_logs/")[1].split("/")[0]
        assert f["records_in"] == f["events"] + f["duplicates"] + sum(
            f["skipped"].values()) + sum(f["quarantined"].values())
        if f["events"]:
            assert f["dataset"] in FAMILY[family], f
            seen.add(f["dataset"])
    assert seen == set().union(*FAMILY.values())
    events = [json.loads(line) for line in r.stdout.splitlines() if '"event.id"' in line]
    assert len(events) == sum(f["events"] for f in files)
