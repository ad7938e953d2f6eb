"""Sink settings: which engine, where, how to trust it and how to authenticate.

Flags win over the config file's `sink:` section; credentials come only from the
environment (KEYTRAIL_SINK_PASSWORD, KEYTRAIL_SINK_API_KEY) or a credentials file, never
from the command line or the config file, and are never logged (`__repr__` hides them).
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote, urlsplit, urlunsplit

import yaml

from dashboards.fields import DEFAULT_PREFIX
from parsers.base import KeytrailError
from pipelines.config import load_config

KINDS: Final[tuple[str, ...]] = ("local", "elasticsearch", "opensearch")
ENV_PASSWORD: Final[str] = "KEYTRAIL_SINK_PASSWORD"  # noqa: S105 - a variable name
ENV_API_KEY: Final[str] = "KEYTRAIL_SINK_API_KEY"
CONFIG_KEYS: Final[tuple[str, ...]] = (
    "type", "url", "ca_certs", "insecure", "user", "credentials_file", "index_prefix",
    "timeout", "max_retries", "dead_letter",
)


@dataclass
class SinkSettings:
    kind: str = "local"
    url: str = ""
    ca_certs: str | None = None
    insecure: bool = False
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    api_key: str | None = field(default=None, repr=False)
    prefix: str = DEFAULT_PREFIX
    timeout: float = 30.0
    max_retries: int = 5
    dead_letter: str | None = None

    @property
    def remote(self) -> bool:
        return self.kind != "local"


def sink_options(parser: argparse.ArgumentParser, *, with_local: bool = True) -> None:
    """Add the sink flags to a subcommand parser."""
    g = parser.add_argument_group("sink")
    g.add_argument("--sink", choices=KINDS if with_local else KINDS[1:], default=None,
                   help="where records go (default: local, or the config file's sink.type)")
    g.add_argument("--sink-url", help="engine URL, e.g. https://search.example:9200")
    g.add_argument("--ca-certs", help="CA bundle (PEM) to verify the engine's certificate")
    g.add_argument("--insecure", action="store_true", default=None,
                   help="do NOT verify the engine's TLS certificate (testing only)")
    g.add_argument("--sink-user", help=f"basic-auth user; the password comes from ${ENV_PASSWORD}"
                   " or --credentials-file")
    g.add_argument("--credentials-file", help="YAML/JSON file with user/password or api_key "
                   "(keep it mode 0600)")
    g.add_argument("--index-prefix", help=f"index name prefix (default: {DEFAULT_PREFIX})")
    g.add_argument("--dead-letter", help="dead-letter file (default: <out>/dead_letter.ndjson)")


def split_url_credentials(url: str) -> tuple[str, str | None, str | None]:
    """(url without `user:password@`, user, password): credentials typed into a URL are
    used, but the URL kept for messages and logs never carries them."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url, None, None
    if "@" not in parts.netloc:
        return url, None, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, sep, password = userinfo.partition(":")
    clean = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return clean, unquote(user) or None, unquote(password) if sep else None


def _read_credentials(path: str) -> dict[str, str]:
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KeytrailError(f"credentials file {path} not found; pass an existing file to "
                            "--credentials-file") from None
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        raise KeytrailError(f"credentials file {path} cannot be read as YAML/JSON; write "
                            "'user: NAME' and 'password: ...', or 'api_key: ...'") from None
    if not isinstance(raw, dict):
        raise KeytrailError(f"credentials file {path}: expected a mapping with user/password "
                            "or api_key")
    unknown = sorted(set(map(str, raw)) - {"user", "username", "password", "api_key"})
    if unknown:
        raise KeytrailError(f"credentials file {path}: unknown key {unknown[0]!r}; allowed: "
                            "user, password, api_key")
    if os.name == "posix" and p.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        print(f"keytrail: warning: credentials file {path} is readable by others; "
              f"chmod 600 {path}", file=sys.stderr)
    return {str(k): str(v) for k, v in raw.items() if v is not None}


def resolve(args_or_cfg: Any) -> SinkSettings:
    """SinkSettings from an argparse namespace, a KeytrailConfig, a dict or SinkSettings."""
    if isinstance(args_or_cfg, SinkSettings):
        return args_or_cfg
    section: dict[str, Any] = {}
    flags: dict[str, Any] = {}
    if isinstance(args_or_cfg, dict):
        section = dict(args_or_cfg)
    elif isinstance(args_or_cfg, argparse.Namespace):
        ns = vars(args_or_cfg)
        flags = {
            "type": ns.get("sink"), "url": ns.get("sink_url"), "ca_certs": ns.get("ca_certs"),
            "insecure": ns.get("insecure"), "user": ns.get("sink_user"),
            "credentials_file": ns.get("credentials_file"),
            "index_prefix": ns.get("index_prefix"), "dead_letter": ns.get("dead_letter"),
        }
        cfg = ns.get("config")
        if isinstance(cfg, str):
            section = dict(load_config(cfg).sink)
        elif cfg is not None and hasattr(cfg, "sink"):
            section = dict(cfg.sink)
    elif hasattr(args_or_cfg, "sink"):
        section = dict(args_or_cfg.sink or {})
    elif args_or_cfg is not None:
        raise TypeError(f"cannot take sink settings from {type(args_or_cfg).__name__}")
    if "password" in section or "api_key" in section:
        raise KeytrailError("sink: do not put credentials in the config file; use "
                            f"{ENV_PASSWORD} / {ENV_API_KEY} or --credentials-file")
    bad = sorted(set(section) - set(CONFIG_KEYS))
    if bad:
        raise KeytrailError(f"sink.{bad[0]}: unknown setting; known: {', '.join(CONFIG_KEYS)}")
    merged = {**section, **{k: v for k, v in flags.items() if v is not None}}
    kind = str(merged.get("type") or "local")
    if kind not in KINDS:
        raise KeytrailError(f"sink type {kind!r} is not one of {', '.join(KINDS)}; fix --sink "
                            "or sink.type in the config")
    s = SinkSettings(kind=kind)
    if not s.remote:
        return s
    url = merged.get("url") or os.environ.get("KEYTRAIL_SINK_URL")
    if not url:
        raise KeytrailError(f"--sink {kind} needs --sink-url (or sink.url in the config), e.g. "
                            "--sink-url https://localhost:9200")
    url, url_user, url_password = split_url_credentials(str(url).rstrip("/"))
    if not url.startswith(("http://", "https://")):
        raise KeytrailError(f"--sink-url {url!r} must start with https:// (or http:// for a "
                            "local test engine)")
    if url_password is not None:
        print(f"keytrail: warning: a password in --sink-url is visible to other users in the "
              f"process list; use {ENV_PASSWORD} or --credentials-file", file=sys.stderr)
    s.url = url  # never with credentials: every message and log may show it
    s.ca_certs = merged.get("ca_certs")
    if s.ca_certs and not Path(s.ca_certs).is_file():
        raise KeytrailError(f"--ca-certs {s.ca_certs} not found; pass a PEM CA bundle")
    s.insecure = bool(merged.get("insecure"))
    s.prefix = str(merged.get("index_prefix") or DEFAULT_PREFIX)
    if not s.prefix.islower() or any(c in s.prefix for c in ' ,"*\\/<>|?#:'):
        raise KeytrailError(f"--index-prefix {s.prefix!r}: use lower-case letters, digits, "
                            "'-' or '_'")
    s.timeout = float(merged.get("timeout", 30.0))
    s.max_retries = int(merged.get("max_retries", 5))
    s.dead_letter = merged.get("dead_letter")
    creds: dict[str, str] = {}
    if merged.get("credentials_file"):
        creds = _read_credentials(str(merged["credentials_file"]))
    s.user = merged.get("user") or creds.get("user") or creds.get("username") or url_user
    s.password = os.environ.get(ENV_PASSWORD) or creds.get("password") or url_password
    s.api_key = os.environ.get(ENV_API_KEY) or creds.get("api_key")
    if s.user and not s.password and not s.api_key:
        raise KeytrailError(f"--sink-user {s.user} needs a password: set {ENV_PASSWORD} or "
                            "put it in --credentials-file")
    if s.insecure:
        print(f"keytrail: warning: TLS certificate verification is OFF for {s.url} "
              "(--insecure); use --ca-certs instead outside tests", file=sys.stderr)
    elif url.startswith("http://") and (s.password or s.api_key):
        print(f"keytrail: warning: sending credentials to {s.url} over plain http",
              file=sys.stderr)
    return s
