"""Credentials in --sink-url never reach a message, and read-back errors are one line.

A local HTTP server plays an engine that is overloaded (429) or failing (5xx) on
`_search`: failure injection; the happy paths run against real engines elsewhere.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.sinks.settings import split_url_credentials
from tests.recording_server import Answer, Recorded, RecordingServer

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "s3cret-in-url"


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTRAIL_SINK")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def _failing_search(status: int) -> RecordingServer:
    def handler(rec: Recorded) -> Answer:
        if rec.path.split("?")[0] == "/":
            return 200, {}, {"version": {"number": "2.19.1", "distribution": "opensearch"},
                             "tagline": "The OpenSearch Project: https://opensearch.org/"}
        return status, {"Retry-After": "0"}, {"error": {"type": "es_rejected_execution_exception",
                                                        "reason": "overloaded"},
                                              "status": status}
    return RecordingServer(handler)


@pytest.mark.parametrize("status", [429, 503, 500])
@pytest.mark.parametrize("command", ["inventory", "alerts"])
def test_engine_error_on_read_back_is_one_line_without_credentials(
        tmp_path: Path, command: str, status: int) -> None:
    with _failing_search(status) as srv:
        url = srv.url.replace("http://", f"http://reader:{PASSWORD}@")
        p = _cli([command, "--sink", "opensearch", "--sink-url", url], tmp_path)
        assert any(r.path.startswith("/keytrail-") for r in srv.requests), "no search sent"
    assert p.returncode != 0
    assert "Traceback" not in p.stderr
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("keytrail: ")
              and "warning" not in ln]
    assert len(errors) == 1, p.stderr
    assert f"HTTP {status}" in errors[0] and "failed" in errors[0]
    assert PASSWORD not in p.stderr + p.stdout
    # the credentials from the URL were used, as basic auth
    assert any(r.headers.get("authorization", "").startswith("Basic ") for r in srv.requests)


def test_unreachable_engine_message_has_no_password(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"https://admin:{PASSWORD}@127.0.0.1:{port}"
    for args in (["inventory", "--sink", "opensearch", "--sink-url", url],
                 ["run", str(REPO / "sample_logs/hsm/luna-malformed.log"), "--out",
                  str(tmp_path / "o"), "--sink", "elasticsearch", "--sink-url", url],
                 ["setup", "--sink", "opensearch", "--sink-url", url]):
        p = _cli(args, tmp_path)
        assert p.returncode != 0 and "Traceback" not in p.stderr, p.stderr
        assert PASSWORD not in p.stderr + p.stdout, p.stderr
        assert f"127.0.0.1:{port}" in p.stderr


def test_split_url_credentials() -> None:
    assert split_url_credentials("https://u:p%40ss@h:9200/x") == ("https://h:9200/x", "u", "p@ss")
    assert split_url_credentials("https://h:9200") == ("https://h:9200", None, None)
    assert split_url_credentials("https://u@h") == ("https://h", "u", None)
