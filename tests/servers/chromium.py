"""Headless Chromium (Debian `chromium`) driven over the DevTools protocol.

Renders a local HTML file to a PNG and collects what a person would see in the
console: console.error/warn/log calls, uncaught exceptions, browser log entries (failed
loads, CSP violations) and every non-file network request the page attempted (blocked,
so a report that needs the network shows up as such instead of hanging).

    with Chromium() as browser:
        r = browser.render(Path("report.html"), Path("report.png"))
        assert not r.errors, r.errors

Chromium binds its DevTools endpoint to 127.0.0.1 on a port it picks itself
(--remote-debugging-port=0, read back from DevToolsActivePort) and runs with a fresh,
empty --user-data-dir.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._common import (
    LOCALHOST,
    ManagedProcess,
    ServerUnavailable,
    artifact_dir,
    http_get,
    wait_until,
)

CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")

FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-client-side-phishing-detection",
    "--disable-domain-reliability",
    "--metrics-recording-only",
    "--mute-audio",
    "--hide-scrollbars",
    "--password-store=basic",
    "--use-mock-keychain",
    "--allow-file-access-from-files",
    f"--remote-debugging-address={LOCALHOST}",
    "--remote-debugging-port=0",
]


def find_chromium() -> str:
    env = os.environ.get("CHROMIUM_BIN")
    for cand in ([env] if env else []) + list(CANDIDATES):
        if cand and Path(cand).exists():
            return cand
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    raise ServerUnavailable("Chromium not found (/usr/bin/chromium): apt-get install -y chromium")


@dataclass
class ConsoleMessage:
    source: str      # console | exception | log
    level: str       # error | warning | info | log | debug ...
    text: str
    url: str = ""
    line: int | None = None


@dataclass
class RenderResult:
    url: str
    png: Path | None
    title: str
    messages: list[ConsoleMessage] = field(default_factory=list)
    network_requests: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[ConsoleMessage]:
        """console.error calls, uncaught exceptions and browser-level errors."""
        return [m for m in self.messages if m.level == "error"]


class _CDP:
    """Minimal synchronous DevTools client over one websocket."""

    def __init__(self, ws_url: str, timeout: float = 30.0) -> None:
        try:
            import websocket  # websocket-client (dev extra)
        except ImportError as e:  # pragma: no cover - dev extra missing
            raise ServerUnavailable("websocket-client missing: pip install -e '.[dev]'") from e
        self._ws = websocket.create_connection(ws_url, timeout=timeout, suppress_origin=True)
        self._next = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        self._next += 1
        msg_id = self._next
        self._ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = json.loads(self._ws.recv())
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"CDP {method} failed: {msg['error']}")
                return dict(msg.get("result", {}))
            if "method" in msg:
                self.events.append(msg)
        raise TimeoutError(f"CDP {method}: no answer in {timeout}s")

    def wait_event(self, method: str, timeout: float) -> dict[str, Any] | None:
        for ev in self.events:
            if ev["method"] == method:
                return ev
        self._ws.settimeout(0.25)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                try:
                    msg = json.loads(self._ws.recv())
                except Exception as e:  # websocket timeout: keep polling
                    if type(e).__name__ == "WebSocketTimeoutException":
                        continue
                    raise
                if "method" in msg:
                    self.events.append(msg)
                    if msg["method"] == method:
                        return msg
        finally:
            self._ws.settimeout(30)
        return None

    def drain(self, seconds: float) -> None:
        self.wait_event("__never__", seconds)

    def close(self) -> None:
        self._ws.close()


class Chromium:
    def __init__(self, base_dir: Path | None = None, *, start_timeout: float = 30.0) -> None:
        self.base_dir = base_dir or artifact_dir("chromium")
        self.start_timeout = start_timeout
        self.binary = find_chromium()
        self.profile = self.base_dir / "profile"
        self.log_path = self.base_dir / "chromium.log"
        self.port: int | None = None
        self._proc: ManagedProcess | None = None

    def __enter__(self) -> Chromium:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> str:
        """Start the browser; returns its DevTools HTTP endpoint."""
        if self._proc is not None and self._proc.alive():
            return f"http://{LOCALHOST}:{self.port}"
        if self.profile.exists():
            shutil.rmtree(self.profile)
        self.profile.mkdir(parents=True)
        argv = [self.binary, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"]
        self._proc = ManagedProcess("chromium", argv, self.log_path, cwd=self.base_dir)
        self._proc.start()
        active = self.profile / "DevToolsActivePort"
        try:
            wait_until(lambda: active.exists() and active.read_text().strip() != "",
                       timeout=self.start_timeout, what="Chromium DevToolsActivePort",
                       procs=[self._proc], interval=0.2)
            self.port = int(active.read_text().splitlines()[0])
            wait_until(lambda: http_get(f"http://{LOCALHOST}:{self.port}/json/version")[0] == 200,
                       timeout=self.start_timeout, what="Chromium DevTools HTTP endpoint",
                       procs=[self._proc], interval=0.2)
        except BaseException:
            self.stop()
            raise
        return f"http://{LOCALHOST}:{self.port}"

    def stop(self) -> None:
        if self._proc is None:
            return
        if self._proc.alive() and self.port is not None:
            try:  # a clean exit is quicker than SIGTERM for Chromium's process tree
                _, body = http_get(f"http://{LOCALHOST}:{self.port}/json/version", timeout=2)
                _CDP(json.loads(body)["webSocketDebuggerUrl"], timeout=5).call(
                    "Browser.close", timeout=5)
            except Exception:  # best effort; SIGTERM/SIGKILL follow
                pass
        self._proc.stop(timeout=3)
        self._proc = None

    def render(self, html: Path | str, png: Path | None = None, *, width: int = 1280,
               height: int = 900, full_page: bool = True, settle: float = 0.5,
               timeout: float = 30.0, block_network: bool = True) -> RenderResult:
        """Open `html` (a path or a URL) in a new tab, wait for load, screenshot to `png`."""
        self.start()
        url = html if isinstance(html, str) and "://" in html else Path(html).resolve().as_uri()
        _, body = http_get(f"http://{LOCALHOST}:{self.port}/json/version")
        browser_ws = json.loads(body)["webSocketDebuggerUrl"]
        browser = _CDP(browser_ws, timeout=timeout)
        target_id = browser.call("Target.createTarget", url="about:blank")["targetId"]
        page_ws = f"ws://{LOCALHOST}:{self.port}/devtools/page/{target_id}"
        cdp = _CDP(page_ws, timeout=timeout)
        try:
            cdp.call("Page.enable")
            cdp.call("Runtime.enable")
            cdp.call("Log.enable")
            cdp.call("Network.enable")
            if block_network:
                cdp.call("Network.setBlockedURLs",
                         urls=["http://*", "https://*", "ws://*", "wss://*", "ftp://*"])
            cdp.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                     deviceScaleFactor=1, mobile=False)
            cdp.events.clear()
            nav = cdp.call("Page.navigate", url=url)
            if nav.get("errorText"):
                raise RuntimeError(f"navigation to {url} failed: {nav['errorText']}")
            if cdp.wait_event("Page.loadEventFired", timeout) is None:
                raise TimeoutError(f"{url}: no load event in {timeout}s")
            cdp.drain(settle)
            title = cdp.call("Runtime.evaluate", expression="document.title",
                             returnByValue=True).get("result", {}).get("value", "")
            shot: Path | None = None
            if png is not None:
                params: dict[str, Any] = {"format": "png"}
                if full_page:
                    metrics = cdp.call("Page.getLayoutMetrics")
                    size = metrics.get("cssContentSize") or metrics.get("contentSize") or {}
                    w = max(width, int(size.get("width", width)))
                    h = max(height, min(int(size.get("height", height)), 16384))
                    params.update(captureBeyondViewport=True,
                                  clip={"x": 0, "y": 0, "width": w, "height": h, "scale": 1})
                data = cdp.call("Page.captureScreenshot", **params)["data"]
                shot = Path(png)
                shot.parent.mkdir(parents=True, exist_ok=True)
                shot.write_bytes(base64.b64decode(data))
            return RenderResult(url=url, png=shot, title=str(title),
                                messages=_messages(cdp.events),
                                network_requests=_requests(cdp.events))
        finally:
            cdp.close()
            try:
                browser.call("Target.closeTarget", targetId=target_id)
            finally:
                browser.close()


def _messages(events: list[dict[str, Any]]) -> list[ConsoleMessage]:
    out: list[ConsoleMessage] = []
    for ev in events:
        p = ev.get("params", {})
        if ev["method"] == "Runtime.consoleAPICalled":
            text = " ".join(
                str(a.get("value", a.get("description", a.get("unserializableValue", ""))))
                for a in p.get("args", []))
            frame = (p.get("stackTrace") or {}).get("callFrames") or [{}]
            level = {"warning": "warning", "error": "error", "assert": "error"}.get(
                p.get("type", "log"), p.get("type", "log"))
            out.append(ConsoleMessage("console", level, text, frame[0].get("url", ""),
                                      frame[0].get("lineNumber")))
        elif ev["method"] == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            exc = d.get("exception", {})
            text = exc.get("description") or d.get("text", "uncaught exception")
            out.append(ConsoleMessage("exception", "error", text, d.get("url", ""),
                                      d.get("lineNumber")))
        elif ev["method"] == "Log.entryAdded":
            e = p.get("entry", {})
            out.append(ConsoleMessage("log", e.get("level", "info"), e.get("text", ""),
                                      e.get("url", ""), e.get("lineNumber")))
    return out


def _requests(events: list[dict[str, Any]]) -> list[str]:
    urls = []
    for ev in events:
        if ev["method"] == "Network.requestWillBeSent":
            u = ev["params"].get("request", {}).get("url", "")
            if u and not u.startswith(("file:", "data:", "blob:", "about:")):
                urls.append(u)
    return urls


def render_html(html: Path | str, png: Path | None = None, **kw: Any) -> RenderResult:
    """One-shot: start Chromium, render, stop."""
    with Chromium() as browser:
        return browser.render(html, png, **kw)
