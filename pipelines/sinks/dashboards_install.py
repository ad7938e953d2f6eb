"""`keytrail dashboards install`: import the saved objects through the saved-objects API.

Kibana: `POST <url>[/s/<space>]/api/saved_objects/_import?overwrite=true` with
`kbn-xsrf`; OpenSearch Dashboards: the same path with `osd-xsrf`. Files are sent as
multipart/form-data, one request per dashboard file (each carries its own data views).
Data view titles follow `--index-prefix` so a non-default prefix still finds its indices.
"""

from __future__ import annotations

import argparse
import base64
import json
import ssl
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from dashboards.fields import DEFAULT_PREFIX
from parsers.base import KeytrailError
from pipelines.sinks.settings import SinkSettings, resolve

ROOT = Path(__file__).resolve().parents[2] / "dashboards"


def saved_object_files(opensearch_dashboards: bool) -> list[Path]:
    folder = ROOT / ("opensearch" if opensearch_dashboards else "kibana")
    files = sorted(folder.glob("*.ndjson"))
    if not files:
        raise KeytrailError(f"no saved objects in {folder}: run 'keytrail dashboards generate'")
    return files


def with_prefix(ndjson: bytes, prefix: str) -> bytes:
    """Rewrite data-view titles for a non-default index prefix."""
    if prefix == DEFAULT_PREFIX:
        return ndjson
    out = []
    for line in ndjson.splitlines():
        obj = json.loads(line)
        if obj.get("type") == "index-pattern":
            title = obj["attributes"]["title"]
            obj["attributes"]["title"] = prefix + title.removeprefix(DEFAULT_PREFIX)
        out.append(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode())
    return b"\n".join(out) + b"\n"


def _multipart(name: str, data: bytes) -> tuple[bytes, str]:
    boundary = f"keytrail-{uuid.uuid4().hex}"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"{name}\"\r\nContent-Type: application/ndjson\r\n\r\n").encode()
    body += data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _ssl_context(s: SinkSettings) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=s.ca_certs)
    if s.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def install_saved_objects(args: argparse.Namespace) -> list[str]:
    """Import every dashboard file; one result line per file. Raises KeytrailError."""
    url = str(args.kibana_url).rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise KeytrailError(f"--kibana-url {url!r} must start with https:// or http://")
    osd = bool(getattr(args, "opensearch_dashboards", False))
    # Reuse the sink's credential rules (env / credentials file, TLS flags) for the UI.
    ns = argparse.Namespace(**{**vars(args), "sink": "opensearch" if osd else "elasticsearch",
                               "sink_url": url})
    s = resolve(ns)
    url = s.url  # without any `user:password@` (used for the login, never shown)
    headers = {"osd-xsrf" if osd else "kbn-xsrf": "true"}
    if s.api_key:
        headers["Authorization"] = f"ApiKey {s.api_key}"
    elif s.user:
        token = base64.b64encode(f"{s.user}:{s.password or ''}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    space = getattr(args, "space", None)
    base = f"{url}/s/{space}" if space and not osd else url
    endpoint = f"{base}/api/saved_objects/_import?overwrite=true"
    ctx = _ssl_context(s) if url.startswith("https://") else None
    product = "OpenSearch Dashboards" if osd else "Kibana"
    lines = []
    for f in saved_object_files(osd):
        body, ctype = _multipart(f.name, with_prefix(f.read_bytes(), s.prefix))
        req = urllib.request.Request(endpoint, data=body, method="POST",  # noqa: S310
                                     headers={**headers, "Content-Type": ctype})
        result = _send(req, ctx, product, url)
        if not result.get("success"):
            errors = result.get("errors") or []
            first = errors[0] if errors else result
            raise KeytrailError(f"{product} rejected {f.name}: {json.dumps(first)[:300]}")
        lines.append(f"{f.name}: {result.get('successCount', 0)} objects imported into "
                     f"{product} at {url}")
    return lines


def _send(req: urllib.request.Request, ctx: ssl.SSLContext | None, product: str,
          url: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=60) as resp:  # noqa: S310
            data: dict[str, Any] = json.loads(resp.read() or b"{}")
            return data
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            raise KeytrailError(f"{product} at {url} refused the credentials (HTTP "
                                f"{exc.code}); set KEYTRAIL_SINK_API_KEY, or --sink-user with "
                                "KEYTRAIL_SINK_PASSWORD") from None
        detail = exc.read()[:300].decode("utf-8", "replace")
        raise KeytrailError(f"{product} at {url} answered HTTP {exc.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise KeytrailError(f"cannot reach {product} at {url} ({reason}); check "
                            "--kibana-url and that it is running") from None
