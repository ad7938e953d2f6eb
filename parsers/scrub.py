"""Secrets scrubbed at parse time, before anything is stored: the one set of rules.

What audit logs can carry in clear, and what keytrail keeps instead:
- Vault `request.path` (never HMAC'd by Vault) on the token-in-URL endpoints
  (`auth/token/lookup/<token>`, `auth/token/revoke-accessor/<accessor>`,
  `sys/leases/revoke/<lease id>`, ...) and any path segment shaped like a token
  (`hvs.`/`hvb.`/`hvr.`, legacy `s.`/`b.`/`r.`): the secret part becomes
  `keytrail-fp:<16 hex>` (fingerprint()); the path shape stays.
- URIs (Key Vault `requestUri`, anything URL-like in an excerpt): query values other than
  an allow-list (`api-version`, paging sizes) become `REDACTED` (SAS `sig=`, `se=` and
  the rest, OAuth codes, tokens), and `user:password@` loses the password.
- Free text (quarantine excerpts, `event.original`, error messages): the same token,
  credential-parameter, URL-password and `Authorization:` patterns.

The fingerprint is an unkeyed, personalised BLAKE2b-64 of the secret. Why: investigators
need to tell "the same token was looked up and then revoked" and to correlate runs and
machines, so it must be stable and need no configured key (outputs are deterministic);
Vault's own `hmac-sha256:` values need the audit device's salt, which keytrail never has.
The tokens are high-entropy random strings, so 64 bits of digest reveal nothing usable,
and the `keytrail-fp:` prefix cannot be mistaken for Vault's HMACs.

The compiled fast paths share these rules rather than copy them: Vault paths go through
parsers/vault.py `_plan` (which the Rust path calls), and the Rust Key Vault path hands
any requestUri that scrub_uri would change back to Python (`uri_is_clean`).
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from typing import Final
from urllib.parse import urlsplit, urlunsplit

FINGERPRINT_PREFIX: Final = "keytrail-fp:"
REDACTED: Final = "REDACTED"

# Vault endpoints whose remainder after the prefix is a token, accessor or lease id.
# whole: the whole remainder is one secret; last: only the last segment is (lease ids
# keep their mount/role path, which is what an investigator reads).
VAULT_SECRET_ENDPOINTS: Final[tuple[tuple[str, str], ...]] = (
    ("auth/token/lookup/", "whole"),
    ("auth/token/lookup-accessor/", "whole"),
    ("auth/token/revoke/", "whole"),
    ("auth/token/revoke-orphan/", "whole"),
    ("auth/token/revoke-accessor/", "whole"),
    ("auth/token/renew/", "whole"),
    ("auth/token/renew-accessor/", "whole"),
    ("sys/leases/lookup/", "last"),
    ("sys/leases/revoke/", "last"),
    ("sys/leases/renew/", "last"),
    ("sys/revoke/", "last"),
    ("sys/renew/", "last"),
    ("sys/wrapping/lookup/", "whole"),
    ("sys/wrapping/unwrap/", "whole"),
)
# hvs./hvb./hvr. (Vault >= 1.10) and legacy s./b./r. service/batch/recovery tokens.
_TOKEN_SHAPE: Final = r"(?:hv[sbr]\.[A-Za-z0-9_-]{20,}|[sbr]\.[A-Za-z0-9]{24,})"  # noqa: S105 (a pattern)
_TOKEN: Final = re.compile(r"(?<![A-Za-z0-9_.-])" + _TOKEN_SHAPE)
_TOKEN_SEGMENT: Final = re.compile("^" + _TOKEN_SHAPE + "$")

# Query parameters whose values are kept: they say how, not who or with what secret.
SAFE_QUERY_PARAMS: Final[frozenset[str]] = frozenset(
    {"api-version", "maxresults", "$top", "$skip", "recoverylevel", "includepending"})
# Credential parameter names looked for in free text (excerpts, messages).
_CRED_PARAM: Final = re.compile(
    r"(?i)([?&;](?:sig|signature|x-amz-signature|x-amz-security-token|x-amz-credential|"
    r"access_token|id_token|refresh_token|token|client_secret|password|passwd|pwd|secret|"
    r"api[_-]?key|code|sas|skoid|sktid|se|sp|sv|st|sr|spr|ske|skt|sks|skv)=)"
    r"([^&\s\"'<>\\]+)")
_URL_PASSWORD: Final = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@\"'<>]+):([^/\s@\"'<>]+)@")
_AUTH_HEADER: Final = re.compile(
    r"(?i)(\b(?:proxy-)?authorization\\?[\"']?\s*[:=]\s*\\?[\"']?)"
    r"(?:(bearer|basic|digest|negotiate|sharedkey|sharedkeylite|hmac-sha256)\s+)?"
    r"[^\s\"'\\,}]+")


def fingerprint(secret: str) -> str:
    """`keytrail-fp:` + 16 hex of BLAKE2b-64 (see the module docstring for why)."""
    digest = hashlib.blake2b(secret.encode("utf-8", "surrogatepass"), digest_size=8,
                             person=b"keytrail-fp").hexdigest()
    return FINGERPRINT_PREFIX + digest


def _fp_match(m: re.Match[str]) -> str:
    return fingerprint(m.group(0))


@lru_cache(maxsize=65536)
def scrub_vault_path(path: str) -> str:
    """A Vault request path with tokens, accessors and lease ids fingerprinted."""
    for prefix, part in VAULT_SECRET_ENDPOINTS:
        at = path.find(prefix)
        if at < 0 or (at > 0 and path[at - 1] != "/"):  # also under a namespace prefix
            continue
        head, rest = path[:at + len(prefix)], path[at + len(prefix):]
        if not rest:
            break
        if part == "whole":
            return head + fingerprint(rest)
        parent, _, last = rest.rpartition("/")
        return head + (parent + "/" if parent else "") + fingerprint(last)
    if "." not in path:  # fast exit: every token shape has a dot
        return path
    segs = path.split("/")
    changed = [fingerprint(s) if _TOKEN_SEGMENT.match(s) else s for s in segs]
    return "/".join(changed)


def uri_is_clean(uri: str) -> bool:
    """True when scrub_uri(uri) == uri (no userinfo, only SAFE_QUERY_PARAMS)."""
    return scrub_uri(uri) == uri


@lru_cache(maxsize=65536)
def scrub_uri(uri: str) -> str:
    """A URI with its password and non-allow-listed query values redacted (shape kept)."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return scrub_text(uri)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{REDACTED}@{host}" if ":" in userinfo else netloc
    query = parts.query
    if query:
        out = []
        for pair in query.split("&"):
            name, eq, value = pair.partition("=")
            secret = eq and value and name.lower() not in SAFE_QUERY_PARAMS
            out.append(f"{name}={REDACTED}" if secret else pair)
        query = "&".join(out)
    if netloc == parts.netloc and query == parts.query:
        path = scrub_vault_path(parts.path) if "." in parts.path else parts.path
        if path == parts.path:
            return uri
        return urlunsplit((parts.scheme, netloc, path, query, parts.fragment))
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def scrub_text(text: str) -> str:
    """Free text (a raw record excerpt, an error message) with every known secret shape
    replaced: Vault tokens, credential query values, URL passwords, Authorization values."""
    if not text:
        return text
    if "." in text:
        text = _TOKEN.sub(_fp_match, text)
    if "=" in text:
        text = _CRED_PARAM.sub(lambda m: m.group(1) + REDACTED, text)
    if "@" in text:
        text = _URL_PASSWORD.sub(lambda m: f"{m.group(1)}:{REDACTED}@", text)
    if "uthorization" in text or "UTHORIZATION" in text:
        text = _AUTH_HEADER.sub(
            lambda m: m.group(1) + (m.group(2) + " " if m.group(2) else "") + REDACTED, text)
    return text


_CONTEXT_START: Final = re.compile(
    r'\\?"(?:encryptionContext|sourceEncryptionContext|destinationEncryptionContext|'
    r'encryption_context|context)\\?"\s*:\s*\{')
_CONTEXT_VALUE: Final = re.compile(
    r'(\\?"(?:[^"\\]|\\[^"])*\\?"\s*:\s*)(\\?")(?:[^"\\]|\\[^"])*(\\?"|$)')


def redact_context_text(text: str) -> str:
    """Raw record text with every encryption-context VALUE replaced (keys kept), for
    quarantine excerpts under `redact_encryption_context: true`. Works on truncated and
    on JSON-in-a-string (escaped quotes) excerpts; an object ends at its first '}'."""
    out, pos = [], 0
    for m in _CONTEXT_START.finditer(text):
        if m.start() < pos:
            continue
        end = text.find("}", m.end())
        end = len(text) if end < 0 else end
        body = _CONTEXT_VALUE.sub(lambda v: f"{v.group(1)}{v.group(2)}{REDACTED}{v.group(3)}",
                                  text[m.end():end])
        out += [text[pos:m.end()], body]
        pos = end
    return "".join(out) + text[pos:] if out else text
