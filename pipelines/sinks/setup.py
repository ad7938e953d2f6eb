"""`keytrail setup`: index templates, lifecycle policy and roles on the engine.

Templates come from `dashboards.fields` (the same functions that generate
dashboards/templates/). Lifecycle and roles degrade with a clear message where the engine
lacks them (no ILM license/feature, no ISM or security plugin): role definitions are then
written to files for the administrator to apply.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from dashboards.fields import FAMILIES, index_template
from dashboards.policies import (
    DEFAULT_RETENTION_DAYS,
    elasticsearch_roles,
    ilm_policy,
    ism_policy,
    opensearch_roles,
)
from pipelines.sinks.engine import EngineError, RetriableError, SearchSink, SinkError


def template_name(family: str, prefix: str) -> str:
    return f"{prefix}-{family}"


def policy_name(prefix: str) -> str:
    return f"{prefix}-events"


def _is_opensearch(info: dict[str, Any]) -> bool:
    return bool(info.get("version", {}).get("distribution") == "opensearch")


def install(sink: SearchSink, *, retention_days: int = DEFAULT_RETENTION_DAYS,
            roles_out: Path | None = None) -> list[str]:
    """Install everything; returns one line per step for the user."""
    info = sink.check()
    opensearch = _is_opensearch(info)
    flavour = "OpenSearch" if opensearch else "Elasticsearch"
    if opensearch != (sink.engine == "OpenSearch"):
        raise SinkError(f"{sink.url} is {flavour} {info.get('version', {}).get('number')}; "
                        f"use --sink {flavour.lower()}")
    prefix = sink.prefix
    lines = [f"{flavour} {info.get('version', {}).get('number', '?')} at {sink.url}"]
    try:
        if opensearch:
            ok, msg = _install_ism(sink, prefix, retention_days)
        else:
            ok, msg = _install_ilm(sink, prefix, retention_days)
        lines.append(msg)
        for family in FAMILIES:
            body = index_template(family, prefix)
            if family == "events" and ok and not opensearch:
                body["template"]["settings"]["index"]["lifecycle"] = {
                    "name": policy_name(prefix)}
            _put(sink, f"/_index_template/{template_name(family, prefix)}", body)
            lines.append(f"index template {template_name(family, prefix)} -> "
                         f"{body['index_patterns'][0]}")
        lines.extend(_install_roles(sink, opensearch, prefix, roles_out))
    except RetriableError as exc:
        raise SinkError(f"{flavour} at {sink.url} stopped answering during setup "
                        f"({exc.reason}); run 'keytrail setup' again") from None
    return lines


def _put(sink: SearchSink, path: str, body: Any, params: dict[str, str] | None = None) -> None:
    try:
        resp = sink.request("PUT", path, body, params)
    except EngineError as exc:
        raise SinkError(f"PUT {path} refused (HTTP {exc.status}: {exc.reason}); setup needs "
                        "an administrator account (manage index templates, lifecycle, "
                        "security)") from None
    if resp.status == 404:
        raise SinkError(f"PUT {path} answered 404: the engine lacks this API")


def _install_ilm(sink: SearchSink, prefix: str, days: int) -> tuple[bool, str]:
    try:
        sink.request("PUT", f"/_ilm/policy/{policy_name(prefix)}", ilm_policy(days))
    except EngineError as exc:
        return False, (f"ILM unavailable (HTTP {exc.status}: no _ilm API, license or "
                       "privilege on this cluster); event "
                       f"indices {prefix}-events-* will not expire: delete old months "
                       "yourself")
    return True, f"ILM policy {policy_name(prefix)}: events deleted after {days} days"


def _install_ism(sink: SearchSink, prefix: str, days: int) -> tuple[bool, str]:
    path = f"/_plugins/_ism/policies/{policy_name(prefix)}"
    try:
        cur = sink.request("GET", path)
    except EngineError as exc:
        return False, _no_ism(prefix, exc.status)
    if cur.status == 404 and not _is_missing_doc(cur.body):
        return False, _no_ism(prefix, 404)
    params: dict[str, str] | None = None
    if cur.status != 404 and isinstance(cur.body, dict) and "_seq_no" in cur.body:
        params = {"if_seq_no": str(cur.body["_seq_no"]),
                  "if_primary_term": str(cur.body["_primary_term"])}
    try:
        sink.request("PUT", path, ism_policy(prefix, days), params)
    except EngineError as exc:
        return False, _no_ism(prefix, exc.status)
    return True, f"ISM policy {policy_name(prefix)}: events deleted after {days} days"


def _is_missing_doc(body: Any) -> bool:
    """A 404 for a policy that does not exist yet (vs. an endpoint that does not exist)."""
    if not isinstance(body, dict):
        return False
    err = body.get("error")
    text = orjson.dumps(err).decode() if err is not None else ""
    return "not found" in text.lower() and "no handler" not in text.lower()


def _no_ism(prefix: str, status: int | None) -> str:
    return (f"ISM unavailable (HTTP {status} on _plugins/_ism: the index-management plugin "
            f"is not installed); event indices {prefix}-events-* will not expire: install "
            "opensearch-index-management and re-run setup, or delete old months yourself")


def _install_roles(sink: SearchSink, opensearch: bool, prefix: str,
                   roles_out: Path | None) -> list[str]:
    roles = opensearch_roles(prefix) if opensearch else elasticsearch_roles(prefix)
    base = "/_plugins/_security/api/roles/" if opensearch else "/_security/role/"
    lines: list[str] = []
    for name, body in roles.items():
        try:
            resp = sink.request("PUT", base + name, body)
            if resp.status == 404:
                raise EngineError("no security API", 404)
        except RetriableError as exc:
            if exc.status is None:
                raise  # the engine went away: not a missing feature
            # ES answers 500 security_exception when security is disabled.
            out = _write_roles(roles, roles_out or Path("keytrail-roles"), opensearch)
            lines.append(f"roles not installed: security unavailable (HTTP {exc.status}); "
                         f"definitions written to {out}: apply them with your security "
                         "tooling")
            return lines
        except EngineError as exc:
            what = "security plugin" if opensearch else "security features"
            out = _write_roles(roles, roles_out or Path("keytrail-roles"), opensearch)
            lines.append(f"roles not installed: {what} unavailable (HTTP {exc.status}); "
                         f"definitions written to {out}: apply them with your security "
                         "tooling")
            return lines
        lines.append(f"role {name} installed")
    return lines


def _write_roles(roles: dict[str, Any], out_dir: Path, opensearch: bool) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / ("roles-opensearch.json" if opensearch else "roles-elasticsearch.json")
    path.write_bytes(orjson.dumps(roles, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
                     + b"\n")
    return path


def missing_templates(sink: SearchSink) -> list[str]:
    """Families whose index template is not installed (delivery refuses to start)."""
    missing = []
    for family in FAMILIES:
        name = template_name(family, sink.prefix)
        try:
            resp = sink.request("GET", f"/_index_template/{name}")
        except EngineError as exc:
            if exc.status == 403:  # a least-privilege writer may not read templates
                return []
            raise
        if resp.status == 404:
            missing.append(name)
    return missing
