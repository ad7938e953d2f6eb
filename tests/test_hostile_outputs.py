"""Every output keytrail writes, over the one hostile corpus (tests/hostile_corpus.py).

Per medium: terminal output has no raw escape/bidi characters; JSON/NDJSON has them
escaped; the HTML report escapes names and keeps its strict CSP; GraphML is valid XML 1.0;
CSV cells cannot start a formula; search-engine documents and dead letters are scrubbed.
Everywhere: no secret of hostile_corpus.SECRETS, and with `redact_encryption_context:
true` no encryption-context value, in events, quarantine, alerts, report, graph, logs,
`parse --json`, search documents and dead letters. Native and Python paths agree.
"""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

from dashboards import exports
from parsers.escaping import csv_cell, search_document, terminal, xml_text
from pipelines.sinks.documents import store_actions
from tests import hostile_corpus as hc

REPO = Path(__file__).resolve().parents[1]


def _cli(args: list[str], cwd: Path, native: bool = True) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, PYTHONPATH=str(REPO), KEYTRAIL_NATIVE="1" if native else "0")
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], cwd=cwd, env=env,
                          capture_output=True, timeout=900, check=False)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The corpus, a redacting config, and one real run over it (native fast paths on)."""
    tmp = tmp_path_factory.mktemp("hostile")
    corpus = hc.write_corpus(tmp / "corpus")
    cfg = tmp / "keytrail.yaml"
    cfg.write_text("parse:\n  redact_encryption_context: true\n")
    out = tmp / "out"
    run = _cli(["run", str(corpus), "--out", str(out), "--config", str(cfg)], tmp)
    assert run.returncode == 0, run.stderr.decode()[-3000:]
    return {"tmp": tmp, "corpus": corpus, "cfg": cfg, "out": out, "run": run}


def _all_text(out: Path) -> dict[str, str]:
    """Every output file as text (Parquet files as their rows' JSON)."""
    texts = {}
    for p in sorted(out.rglob("*")):
        if p.is_dir():
            continue
        if p.suffix == ".parquet":
            texts[str(p)] = orjson.dumps(pq.read_table(p).to_pylist(), default=str).decode()
        else:
            texts[str(p)] = p.read_bytes().decode("utf-8", "replace")
    return texts


def _assert_no_secrets(where: str, text: str, context_redacted: bool = True) -> None:
    for s in hc.SECRETS + ((hc.CONTEXT_VALUE,) if context_redacted else ()):
        assert s not in text, f"secret {s[:12]}... in {where}"


def _assert_terminal_safe(where: str, text: str) -> None:
    for ch in hc.HOSTILE_RAW:
        assert ch not in text, f"raw {ch!r} reaches the terminal through {where}"


def test_the_corpus_reaches_every_output(world: dict[str, Any]) -> None:
    """Guard against a vacuous pass: hostile names and scrubbed secrets are really there."""
    out = world["out"]
    events = [r for p in sorted((out / "events").rglob("*.parquet"))
              for r in pq.read_table(p).to_pylist()]
    names = {r.get("user.name") for r in events} | {r.get("user.id") for r in events}
    assert any(n and "pwned" in n for n in names)
    stored = orjson.dumps(events, default=str).decode()
    assert "auth/token/revoke/keytrail-fp:" in stored
    assert "auth/token/lookup-accessor/keytrail-fp:" in stored
    assert "sig=REDACTED" in stored
    assert "pwned" in (out / "alerts.ndjson").read_text()
    q = (out / "quarantine.ndjson").read_text()
    assert "Bearer REDACTED" in q and "REDACTED" in q


def test_no_secret_in_any_stored_output_or_log(world: dict[str, Any]) -> None:
    for where, text in _all_text(world["out"]).items():
        _assert_no_secrets(where, text)
    _assert_no_secrets("run stderr", world["run"].stderr.decode("utf-8", "replace"))


def test_search_documents_are_scrubbed_json(world: dict[str, Any]) -> None:
    n = 0
    for a in store_actions(world["out"], "keytrail"):
        body = search_document(a.body())
        text = body.decode("utf-8")
        _assert_no_secrets(f"{a.family} document {a.id}", text)
        _assert_terminal_safe(f"{a.family} document", text)
        assert orjson.loads(body) == orjson.loads(orjson.dumps(a.body()))  # same value
        n += 1
    assert n > 100


def test_parse_json_is_scrubbed_escaped_and_native_equals_python(world: dict[str, Any]) -> None:
    outs = {}
    for native in (True, False):
        p = _cli(["parse", "--json", "--config", str(world["cfg"]), str(world["corpus"])],
                 world["tmp"], native)
        assert p.returncode == 0, p.stderr.decode()[-2000:]
        text = p.stdout.decode()
        _assert_no_secrets("parse --json", text)
        _assert_terminal_safe("parse --json", text)
        outs[native] = text
    assert outs[True] == outs[False]


def test_terminal_printers_neutralise_escapes(world: dict[str, Any]) -> None:
    tmp, out = world["tmp"], str(world["out"])
    for args in (["parse", str(world["corpus"])], ["alerts", "--out", out],
                 ["inventory", "--out", out], ["run", str(world["corpus"]), "--out",
                                               str(tmp / "again")],
                 ["parse", str(tmp / "no\x1b]0;x\x07such")]):
        p = _cli(args, tmp)
        both = (p.stdout + p.stderr).decode("utf-8", "replace")
        _assert_terminal_safe(" ".join(args[:1]), both)
        _assert_no_secrets(" ".join(args[:1]), both, context_redacted=False)
        assert "Traceback" not in both
    alerts = _cli(["alerts", "--out", out], tmp).stdout.decode()
    assert "ops?]0;pwned?" in alerts  # the name is still readable, its escapes are not


def test_graphml_is_valid_xml_with_hostile_names(world: dict[str, Any]) -> None:
    root = ET.parse(world["out"] / "graph.graphml").getroot()  # raises on invalid XML
    ids = [n.get("id") or "" for n in root.iter("{http://graphml.graphdrawing.org/xmlns}node")]
    assert any("pwned" in i and "\\u0001" in i for i in ids), ids[:5]
    assert xml_text("a\x01b\ud800c\ufffe") == "a\\u0001b\\ud800c\\ufffe"


def test_report_escapes_hostile_names_and_keeps_a_strict_csp(world: dict[str, Any]) -> None:
    html = (world["out"] / "report.html").read_text()
    assert "pwned" in html
    assert "<script>window" not in html and "<img src=x" not in html
    assert "<svg onload" not in html
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html
    assert html.count("<script") == 1  # only the report's own hashed script
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html)
    assert csp is not None
    policy = csp.group(1)
    assert "default-src &#x27;none&#x27;" in policy or "default-src 'none'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert re.search(r"script-src (&#x27;|')sha256-", policy)
    for ch in ("\x1b", "\x07", "\x01"):
        assert ch not in html


def test_csv_cells_cannot_start_a_formula(world: dict[str, Any]) -> None:
    inv = orjson.loads((world["out"] / "inventory.json").read_bytes())
    inv += [{"uid": f, "name": f, "provider": "aws_kms"} for f in hc.FORMULAS]
    rows = list(csv.reader(io.StringIO(exports.to_csv(inv))))
    for row in rows[1:]:
        for cell in row:
            assert not cell or cell[0] not in "=+-@\t\r\n \uff1d\uff0b\uff0d\uff20", row
    for f in hc.FORMULAS:
        assert csv_cell(f) == "'" + f
    assert csv_cell("plain") == "plain" and csv_cell(-3) == "-3"  # numbers stay numbers


def test_terminal_sanitiser_covers_the_known_attacks() -> None:
    attack = "a\x1b]0;t\x07b\x1b[2Jc\u202ed\x9b1me\u2066f\u200fg\u2028h\x00i\ni"
    assert terminal(attack) == "a?]0;t?b?[2Jc?d?1me?f?g?h?i?i"
