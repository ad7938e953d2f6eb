"""report.html in real headless Chromium: no console errors, no network, the inventory table,
rotation section, usage-graph SVG and alerts render, the JS filter/sort work, and log content
cannot run script. A full-page screenshot is kept in test-artifacts/report.png.

Chromium is driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`): no port,
no extra Python package. When the shared helper tests/servers/chromium.py offers the same
(console capture + screenshot), `BrowserPage` is the one place to switch over.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dashboards.report import render_report
from detectors.base import Finding, make_alert
from tests.test_report import (
    ACCT,
    XSS,
    _edge,
    _meta,
    ev,
    kms,
    sample_inventory,
    sample_run,
)

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--mute-audio", "--hide-scrollbars", "--remote-debugging-pipe",
]
TIMEOUT = 30.0
# A payload in a key alias and a principal: if it ever executes it sets this global.
PWN = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=1</script>'


def find_chromium() -> str:
    for candidate in (os.environ.get("KEYTRAIL_CHROMIUM"), "/usr/bin/chromium",
                      shutil.which("chromium"), shutil.which("chromium-browser"),
                      shutil.which("google-chrome")):
        if candidate and Path(candidate).exists():
            return candidate
    reason = ("headless Chromium not found (install the Debian package: apt-get install -y "
              "chromium, or set KEYTRAIL_CHROMIUM)")
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI must run the browser test: {reason}")
    pytest.skip(reason)


class BrowserPage:
    """A minimal DevTools-protocol client over Chromium's debugging pipe (fd 3 in, fd 4 out)."""

    def __init__(self, chromium: str, user_dir: Path) -> None:
        cmd_r, self._cmd_w = os.pipe()
        self._res_r, res_w = os.pipe()
        # Move the child's ends above fd 9 first so the dup2s below cannot clobber each other.
        hi_cmd = fcntl.fcntl(cmd_r, fcntl.F_DUPFD, 10)
        hi_res = fcntl.fcntl(res_w, fcntl.F_DUPFD, 10)
        os.close(cmd_r)
        os.close(res_w)

        def wire_pipes() -> None:
            os.dup2(hi_cmd, 3)
            os.dup2(hi_res, 4)

        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={user_dir}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr,
            preexec_fn=wire_pipes, pass_fds=(3, 4))  # noqa: PLW1509 - single-threaded fork
        os.close(hi_cmd)
        os.close(hi_res)
        self._buf = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        self.session: str | None = None

    # protocol plumbing -----------------------------------------------------------------
    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or (self.proc.poll() is not None and not select.select(
                    [self._res_r], [], [], 0)[0]):
                raise TimeoutError(f"Chromium stopped answering; stderr: {self.stderr()[-2000:]}")
            ready, _, _ = select.select([self._res_r], [], [], min(left, 0.5))
            if ready:
                chunk = os.read(self._res_r, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"Chromium closed the pipe: {self.stderr()[-2000:]}")
                self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        msg: dict[str, Any] = json.loads(raw)
        return msg

    def send(self, method: str, params: dict[str, Any] | None = None,
             session: bool = True) -> dict[str, Any]:
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            if "method" in reply:
                self.events.append(reply)

    def wait_for(self, method: str) -> dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT
        for i, e in enumerate(self.events):
            if e["method"] == method:
                return self.events.pop(i)
        while True:
            msg = self._read_message(deadline)
            if msg.get("method") == method:
                return msg
            if "method" in msg:
                self.events.append(msg)

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")

    # page API ----------------------------------------------------------------------------
    def open(self, url: str) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)
        attached = self.send("Target.attachToTarget",
                             {"targetId": target["targetId"], "flatten": True}, session=False)
        self.session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": 1440, "height": 1000, "deviceScaleFactor": 1, "mobile": False})
        self.send("Page.navigate", {"url": url})
        self.wait_for("Page.loadEventFired")

    def js(self, expression: str) -> Any:
        res = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                             "awaitPromise": True})
        if "exceptionDetails" in res:
            raise AssertionError(f"JS failed: {expression}: {res['exceptionDetails']}")
        return res["result"].get("value")

    def problems(self) -> list[str]:
        """Console errors/warnings, uncaught exceptions, error log entries (CSP included)."""
        self.send("Runtime.evaluate", {"expression": "0"})  # flush pending events
        out = []
        for e in self.events:
            p = e.get("params", {})
            if e["method"] == "Runtime.consoleAPICalled" and p.get("type") in (
                    "error", "assert", "warning"):
                out.append("console: " + " ".join(str(a.get("value", a.get("description")))
                                                   for a in p.get("args", [])))
            elif e["method"] == "Runtime.exceptionThrown":
                out.append("exception: " + json.dumps(p.get("exceptionDetails"))[:500])
            elif e["method"] == "Log.entryAdded" and p.get("entry", {}).get("level") in (
                    "error", "warning"):
                out.append(f"log: {p['entry'].get('source')}: {p['entry'].get('text')}")
        return out

    def requests(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events
                if e["method"] == "Network.requestWillBeSent"]

    def screenshot(self, path: Path) -> bytes:
        metrics = self.send("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        shot = self.send("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": 1440, "height": min(int(size["height"]), 16000),
                     "scale": 1}})
        data = base64.b64decode(shot["data"])
        path.write_bytes(data)
        return data

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.send("Browser.close", session=False)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for fd in (self._cmd_w, self._res_r):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._stderr.close()


def realistic_report() -> str:
    """The sample run plus a key and principal whose names carry a script payload."""
    summary, inventory, edges, resource_edges, alerts = sample_run()
    evil_uid = kms("bad0bad0-0000-4000-8000-00000000beef")
    evil_user = f"arn:aws:iam::{ACCT}:user/{PWN}"
    inventory += sample_inventory({evil_uid: [
        ev("2025-05-01T00:00:00.000Z", evil_uid, "CreateKey", "create", user=evil_user,
           key_alias=f"alias/{PWN}", key_spec="SYMMETRIC_DEFAULT")]})
    edges.append(_edge(evil_user, evil_uid, "decrypt", 77, name=PWN))
    alerts.append(make_alert(
        _meta("new_principal", f"New principal {XSS}", "low", 21, "T1078", "Valid Accounts"),
        Finding(entity=evil_uid, first_seen="2025-05-01T00:00:00.000Z",
                last_seen="2025-05-01T00:00:00.000Z", key_uid=evil_uid, principal=evil_user,
                explanation=f"First use by {PWN}")))
    return render_report(summary, inventory, edges, resource_edges, alerts)


@pytest.fixture(scope="module")
def page() -> Iterator[BrowserPage]:
    chromium = find_chromium()
    ARTIFACTS.mkdir(exist_ok=True)
    report = ARTIFACTS / "report.html"
    report.write_text(realistic_report(), encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="keytrail-chromium-") as user_dir:
        p = BrowserPage(chromium, Path(user_dir))
        try:
            p.open(report.as_uri())
            yield p
        finally:
            p.close()


def test_no_console_errors_and_no_network(page: BrowserPage) -> None:
    assert page.js("document.body.getAttribute('data-report-ready')") == "1", \
        "the report's script did not run to the end"
    assert page.problems() == []
    external = [u for u in page.requests() if not u.startswith(("file:", "data:", "about:"))]
    assert external == []


def test_sections_render(page: BrowserPage) -> None:
    counts = page.js("""({
      inventoryRows: document.querySelectorAll('#inventory-table tbody tr').length,
      rotationRows: document.querySelectorAll('#rotation-table tbody tr').length,
      rotationCards: document.querySelectorAll('#rotation .stat').length,
      timelines: document.querySelectorAll('#timelines details').length,
      edges: document.querySelectorAll('#usage-graph path.e').length,
      redEdges: document.querySelectorAll('#usage-graph path.e.red').length,
      alerts: document.querySelectorAll('#alert-list article.alert').length,
      resources: document.querySelectorAll('#resources-table tbody tr').length,
    })""")
    assert counts == {"inventoryRows": 10, "rotationRows": 9, "rotationCards": 6,
                      "timelines": 9, "edges": 8, "redEdges": 2, "alerts": 4, "resources": 3}
    # Elements are laid out, not just present.
    boxes = page.js("""['inventory-table', 'rotation-table', 'usage-graph', 'alert-list']
      .map(id => { const r = document.getElementById(id).getBoundingClientRect();
                   return [id, Math.round(r.width), Math.round(r.height)]; })""")
    for name, width, height in boxes:
        assert width > 600 and height > 100, (name, width, height)
    assert page.js("document.querySelector('#alert-list article').dataset.severity") == "critical"


def test_log_content_cannot_run_script(page: BrowserPage) -> None:
    assert page.js("typeof window.__pwned") == "undefined"
    assert page.js("document.scripts.length") == 1
    text = page.js("document.getElementById('inventory-table').textContent")
    assert "alias/<img src=x onerror=" in text  # shown verbatim, as text
    assert page.js("document.querySelectorAll('main img, main script').length") == 0


def test_filter_and_sort_work(page: BrowserPage) -> None:
    visible = """Array.from(document.querySelectorAll('#inventory-table tbody tr'))
                   .filter(r => !r.hidden).length"""
    page.js("""(() => { const i = document.querySelector('input[data-filter="inventory-table"]');
               i.value = 'legacy-backups'; i.dispatchEvent(new Event('input')); })()""")
    assert page.js(visible) == 1
    assert "1 of 10" in page.js("document.getElementById('inventory-table-count').textContent")
    page.js("""(() => { const i = document.querySelector('input[data-filter="inventory-table"]');
               i.value = ''; i.dispatchEvent(new Event('input')); })()""")
    assert page.js(visible) == 10
    first_count = """(() => { const h = Array.from(document.querySelectorAll(
        '#inventory-table thead th')).find(t => t.textContent.startsWith('Principals'));
        h.click(); const idx = Array.from(h.parentNode.children).indexOf(h);
        return Array.from(document.querySelectorAll('#inventory-table tbody tr'))
          .map(r => Number(r.cells[idx].dataset.sort)); })()"""
    ascending = page.js(first_count)
    assert ascending == sorted(ascending)
    descending = page.js(first_count)
    assert descending == sorted(descending, reverse=True)
    assert page.problems() == []


def test_screenshot_artifact(page: BrowserPage) -> None:
    page.js("document.querySelectorAll('#alert-list details').forEach(d => d.open = true)")
    data = page.screenshot(ARTIFACTS / "report.png")
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 50_000
    (ARTIFACTS / "report.dom.html").write_text(
        page.js("document.documentElement.outerHTML"), encoding="utf-8")


def test_console_capture_catches_errors(tmp_path: Path) -> None:
    """The checks above can fail: a page with a script error is reported."""
    chromium = find_chromium()
    bad = tmp_path / "bad.html"
    bad.write_text("<!doctype html><title>x</title><script>console.error('boom');"
                   "null.f();</script>", encoding="utf-8")
    p = BrowserPage(chromium, tmp_path / "profile")
    try:
        p.open(bad.as_uri())
        problems = p.problems()
    finally:
        p.close()
    assert any("boom" in x for x in problems), problems
    assert any(x.startswith("exception:") for x in problems), problems


def test_hostile_corpus_report_runs_no_script(tmp_path: Path) -> None:
    """The report of a real run over tests/hostile_corpus.py: names shown, nothing runs."""
    from pipelines.run import run_batch
    from tests.hostile_corpus import write_corpus

    chromium = find_chromium()
    out = tmp_path / "out"
    run_batch([str(write_corpus(tmp_path / "corpus"))], str(out))
    with tempfile.TemporaryDirectory(prefix="keytrail-chromium-") as user_dir:
        p = BrowserPage(chromium, Path(user_dir))
        try:
            p.open((out / "report.html").as_uri())
            assert p.js("typeof window.__pwned") == "undefined"
            text = p.js("document.body.innerText")
            assert "<script>window.__pwned=1</script>" in text  # shown as text
            assert "\\u202e" in text  # the override shown as visible text...
            assert "\u202e" not in text  # ...never applied to the page
            assert p.js("document.querySelectorAll('script').length") == 1
            assert not p.problems(), p.problems()
            assert not [u for u in p.requests() if not u.startswith(("file:", "data:"))]
        finally:
            p.close()
