"""The one user config file: loading (safe YAML) and validation with errors that name the fix.

Every section is optional; an empty or absent file gives the defaults `keytrail run` uses.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from detectors.inventory import DEFAULT_POLICIES, CryptoperiodPolicy
from parsers.base import KeytrailError, ParseOptions
from parsers.timeutil import BadTimestamp, normalize_iso

TOP_LEVEL: Final[tuple[str, ...]] = (
    "as_of", "parse", "graph", "cryptoperiods", "compromised_keys", "detectors", "sink",
    "runner",
)
PURPOSES: Final[tuple[str, ...]] = (
    "encryption", "signing", "mac", "wrapping", "derivation", "secret",
)
WINDOWS: Final[tuple[str, ...]] = ("1h", "1d")


class ConfigError(KeytrailError):
    """The config file is invalid; the message lists every problem and its fix."""


@dataclass
class KeytrailConfig:
    """Validated configuration for one run."""

    as_of: str | None = None  # None: the newest event time in the input (deterministic)
    parse: ParseOptions = field(default_factory=ParseOptions)
    graph_window: str = "1d"
    policies: tuple[CryptoperiodPolicy, ...] = DEFAULT_POLICIES
    compromised_keys: frozenset[str] = frozenset()
    detectors: dict[str, Any] = field(default_factory=dict)
    sink: dict[str, Any] = field(default_factory=dict)
    source_path: str | None = None


def _suggest(name: str, known: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def load_config(path: str | None) -> KeytrailConfig:
    """Load and validate a YAML config file; None gives the defaults."""
    if path is None:
        return KeytrailConfig()
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {path} not found; pass an existing YAML file to --config")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}; fix the syntax") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from None
    cfg = parse_config(raw if raw is not None else {})
    cfg.source_path = str(p)
    return cfg


def parse_config(raw: Any) -> KeytrailConfig:
    """Validate a config mapping; raise ConfigError listing all problems."""
    errors: list[str] = []
    if not isinstance(raw, dict):
        raise ConfigError("config: expected a mapping at the top level (key: value lines)")
    for k in raw:
        if k not in TOP_LEVEL:
            errors.append(f"{k}: unknown section{_suggest(str(k), TOP_LEVEL)}; "
                          f"known sections: {', '.join(TOP_LEVEL)}")
    cfg = KeytrailConfig()

    as_of = raw.get("as_of")
    if as_of is not None:
        if as_of == "now":
            cfg.as_of = "now"
        else:
            try:
                cfg.as_of = normalize_iso(str(as_of))
            except BadTimestamp:
                errors.append(f"as_of: {as_of!r} is not a timestamp; use e.g. "
                              "'2026-11-01T00:00:00Z' or 'now'")

    parse = raw.get("parse") or {}
    if not isinstance(parse, dict):
        errors.append("parse: expected a mapping with vault_cluster / include_original / "
                      "redact_encryption_context")
        parse = {}
    known_parse = ("vault_cluster", "include_original", "redact_encryption_context",
                   "max_line_bytes", "max_document_bytes")
    for k in parse:
        if k not in known_parse:
            errors.append(f"parse.{k}: unknown option{_suggest(str(k), known_parse)}")
    vc = parse.get("vault_cluster", "default")
    if not isinstance(vc, str) or not vc or "/" in vc:
        errors.append("parse.vault_cluster: expected a cluster name without '/', e.g. 'prod'")
        vc = "default"
    flags: dict[str, bool] = {}
    for name in ("include_original", "redact_encryption_context"):
        v = parse.get(name, False)
        if not isinstance(v, bool):
            errors.append(f"parse.{name}: expected true or false, got {v!r}")
            v = False
        flags[name] = v
    limits: dict[str, int] = {}
    for name in ("max_line_bytes", "max_document_bytes"):
        if name in parse:
            n = parse[name]
            if isinstance(n, bool) or not isinstance(n, int) or n < 1024:
                errors.append(f"parse.{name}: expected a byte count >= 1024, got {n!r}")
            else:
                limits[name] = n
    defaults = ParseOptions()
    cfg.parse = ParseOptions(
        vault_cluster=vc, **flags,
        max_line_bytes=limits.get("max_line_bytes", defaults.max_line_bytes),
        max_document_bytes=limits.get("max_document_bytes", defaults.max_document_bytes))

    graph = raw.get("graph") or {}
    if not isinstance(graph, dict):
        errors.append("graph: expected a mapping, e.g. 'graph: {window: 1d}'")
        graph = {}
    window = graph.get("window", "1d")
    if window not in WINDOWS:
        errors.append(f"graph.window: {window!r} is not supported; use one of {', '.join(WINDOWS)}")
    else:
        cfg.graph_window = window

    policies = raw.get("cryptoperiods")
    if policies is not None:
        user: list[CryptoperiodPolicy] = []
        if not isinstance(policies, list):
            errors.append("cryptoperiods: expected a list of policies, each with name, days and "
                          "selectors (provider, purpose, kind, key, alias)")
            policies = []
        for i, item in enumerate(policies):
            where = f"cryptoperiods[{i}]"
            if not isinstance(item, dict):
                errors.append(f"{where}: expected a mapping with name and days")
                continue
            allowed = ("name", "days", "provider", "purpose", "kind", "key", "alias")
            for k in item:
                if k not in allowed:
                    errors.append(f"{where}.{k}: unknown selector{_suggest(str(k), allowed)}")
            name = item.get("name") or f"user-policy-{i}"
            days = item.get("days")
            if days is not None and (not isinstance(days, int) or isinstance(days, bool)
                                     or days <= 0):
                errors.append(f"{where}.days: expected a positive number of days or null "
                              f"(not evaluated), got {days!r}")
                continue
            purpose = item.get("purpose")
            if purpose is not None and purpose not in PURPOSES:
                hint = _suggest(str(purpose), PURPOSES)
                errors.append(f"{where}.purpose: {purpose!r} unknown{hint}; use one of "
                              f"{', '.join(PURPOSES)}")
                continue
            user.append(CryptoperiodPolicy(
                name=str(name), days=days, provider=item.get("provider"), purpose=purpose,
                kind=item.get("kind"), key=item.get("key"), alias=item.get("alias"),
                source=f"config {where}"))
        cfg.policies = (*user, *DEFAULT_POLICIES)

    comp = raw.get("compromised_keys") or []
    if not isinstance(comp, list) or not all(isinstance(c, str) for c in comp):
        errors.append("compromised_keys: expected a list of keytrail.key.uid strings")
    else:
        cfg.compromised_keys = frozenset(comp)

    det = raw.get("detectors") or {}
    if not isinstance(det, dict):
        errors.append("detectors: expected a mapping of detector id -> settings")
        det = {}
    errors.extend(_validate_detectors(det))
    cfg.detectors = det

    sink = raw.get("sink") or {}
    if not isinstance(sink, dict):
        errors.append("sink: expected a mapping, e.g. 'sink: {type: opensearch, url: ...}'")
        sink = {}
    if "password" in sink or "api_key" in sink:
        errors.append("sink: do not put credentials in the config file; use the environment "
                      "(KEYTRAIL_SINK_PASSWORD / KEYTRAIL_SINK_API_KEY) or a credentials file")
    cfg.sink = sink

    if errors:
        raise ConfigError("invalid config: " + "; ".join(errors))
    return cfg


def _validate_detectors(section: dict[str, Any]) -> list[str]:
    from detectors.catalog import validate_tuning

    return list(validate_tuning(section))
