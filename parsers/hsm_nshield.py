"""Entrust (formerly nCipher/Thales) nShield HSM audit logs -> KeyEvent (dataset `hsm.nshield`).

The only vendor description available is the app note "Understanding the New Audit
Logging Format": firmware < 13.5 exported audit records as CEF messages over UDP syslog;
firmware >= 13.5 writes structured audit records aligned with nCore data structures,
collected by the nShield Audit Log Service (nshieldauditd) into local databases. Neither
record layout is published in that note, so both parsers below are built on stated
ASSUMPTIONS; everything outside them is kept verbatim (event.action, hsm.* leftovers).

`NShieldCefParser` - one CEF record per line, optionally after a syslog header:
`CEF:0|<vendor>|<product>|<version>|<signature id>|<name>|<severity>|<extension>`.
Assumed: vendor nCipher / Thales / Entrust, product containing "nShield"; the signature id
(or, if numeric, the name) is the nCore command (GenerateKey, LoadBlob, ...); extension keys
are the standard ArcSight ones: `rt` (epoch ms or `MMM dd yyyy HH:mm:ss`, UTC), `deviceExternalId`
(module ESN), `dvchost`, `src`, `suser`, `outcome`, `reason` (nCore status), `cn1`
(sequence number when `cn1Label=seq...`), and `csN`/`csNLabel` pairs named `appname`,
`ident`, `keyhash`, `cardset`. CEF escapes (`\\|` in the header, `\\=` `\\\\` `\\n` in values)
are honoured. Lines without `CEF:` are skipped (`not_cef`); a broken CEF header is
quarantined (`unknown_shape`).

`NShieldAuditJsonParser` - nCore audit records (>= 13.5) exported as JSON, NDJSON or one
JSON array. Assumed fields: `seqno`, `time` (RFC 3339), `esn`, `command` (nCore command
name), `status` (`OK` or an nCore status such as `AccessDenied`), `key`
{`appname`, `ident`, `hash`}, `cardset` {`name`, `type` ACS|OCS, `hash`} or a string,
`client` {`ip`, `user`, `process`}. Alternative spellings (`timestamp`, `cmd`, `module_esn`,
`result`, `seq`) are accepted.

Mapping (both formats): GenerateKey/GenerateKeyPair create; Import import; Export export;
MakeBlob wrap and LoadBlob unwrap (a key blob is the key wrapped under a module or card-set
key: loading it is how a key is brought into use); Encrypt/Decrypt/Sign/Verify/DeriveKey
crypto; SetACL update_policy; ReadShare/LoadLogicalToken login (presenting a card of a card
set is the authentication step; a failure is a failed authorization); InitialiseUnit(Ex)
and Zeroize admin_other with `hsm.zeroize`; FormatToken/WriteShare/ChangeSharePIN and the
world/card-set commands admin_other with `hsm.quorum` (ACS/OCS changes); nCore `Destroy`
only frees an in-module object id, so it is admin_other, not a key destruction. Unknown
commands are admin_other. Any status other than OK is a failure (`error.code` = status).

Key identity: `nshield://<module ESN>/<appname>/<ident>` (as the project asks; note that a
Security World key is usable on every module of the world, so the same key seen on two
modules gets two uids), or `nshield://<ESN>/hash/<keyhash>` when only the hash is logged;
`unknown` stands for a missing ESN. hardserver log lines are not covered (not documented).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import IO, Any, Final

import orjson

from parsers.base import (
    LogParser,
    ParseOutcome,
    Skipped,
    per_record,
    quarantine,
    register,
    stable_id,
)
from parsers.framing import OVERLONG, iter_lines, too_long
from parsers.hsm_common import (
    epoch_ms_iso,
    first_significant_byte,
    hms_to_iso,
    json_records,
    month_number,
)
from parsers.netaddr import clean_ip
from parsers.schema import Outcome, new_event
from parsers.timeutil import BadTimestamp, normalize_iso

DATASET: Final = "hsm.nshield"
PROVIDER: Final = "nshield"

# nCore command -> (operation, flag); flags: zeroize, quorum, user
COMMANDS: Final[dict[str, tuple[str, str]]] = {
    "GenerateKey": ("create", ""),
    "GenerateKeyPair": ("create", ""),
    "Import": ("import", ""),
    "Export": ("export", ""),
    "MakeBlob": ("wrap", ""),
    "LoadBlob": ("unwrap", ""),
    "Encrypt": ("encrypt", ""),
    "Decrypt": ("decrypt", ""),
    "Sign": ("sign", ""),
    "Verify": ("verify", ""),
    "DeriveKey": ("derive", ""),
    "SetACL": ("update_policy", ""),
    "ReadShare": ("login", ""),
    "LoadLogicalToken": ("login", ""),
    "InitialiseUnit": ("admin_other", "zeroize"),
    "InitialiseUnitEx": ("admin_other", "zeroize"),
    "Zeroize": ("admin_other", "zeroize"),
    "FormatToken": ("admin_other", "quorum"),
    "WriteShare": ("admin_other", "quorum"),
    "ChangeSharePIN": ("admin_other", "quorum"),
    "MakeACS": ("admin_other", "quorum"),
    "MakeOCS": ("admin_other", "quorum"),
    "NewWorld": ("admin_other", "quorum"),
    "SetKM": ("admin_other", ""),
    "RemoveKM": ("admin_other", ""),
    "Destroy": ("admin_other", ""),
}
OK_STATUS: Final[frozenset[str]] = frozenset(["ok", "status_ok", "success", "succeeded", "0"])


@lru_cache(maxsize=512)
def _command(name: str) -> tuple[str, str]:
    return COMMANDS.get(name, ("admin_other", ""))


def _outcome(status: str | None, cef_outcome: str | None = None) -> tuple[Outcome, str | None]:
    if cef_outcome:
        low = cef_outcome.lower()
        if low in ("success", "succeeded", "ok"):
            return "success", None
        if low in ("failure", "failed", "fail"):
            return "failure", status or cef_outcome
    if status:
        if status.lower() in OK_STATUS:
            return "success", None
        return "failure", status
    return "unknown", None


def _key_uid(
    esn: str | None, appname: str | None, ident: str | None, key_hash: str | None
) -> str | None:
    module = esn or "unknown"
    if appname and ident:
        return f"nshield://{module}/{appname}/{ident}"
    if key_hash:
        return f"nshield://{module}/hash/{key_hash}"
    return None


def _build(
    parser: LogParser,
    *,
    timestamp: str,
    event_id: str,
    command: str,
    status: str | None,
    cef_outcome: str | None,
    esn: str | None,
    appname: str | None,
    ident: str | None,
    key_hash: str | None,
    card_set: str | None,
    card_set_type: str | None,
    user: str | None,
    source: str | None,
    seq: str | None,
    raw: bytes,
    path: str,
    offset: int,
    message: str | None = None,
) -> ParseOutcome:
    operation, flag = _command(command)
    outcome, error_code = _outcome(status, cef_outcome)
    extra: dict[str, Any] = {}
    fields: dict[str, Any] = {}
    if esn:
        extra["hsm.module_esn"] = esn
        extra["hsm.serial"] = esn
    if seq:
        extra["hsm.sequence_no"] = seq
    if status:
        extra["hsm.return_code"] = status
    if appname:
        extra["hsm.appname"] = appname
    if ident:
        extra["hsm.ident"] = ident
    if key_hash:
        extra["hsm.key_hash"] = key_hash
    if card_set:
        extra["hsm.card_set"] = card_set
    if card_set_type:
        extra["hsm.user_type"] = card_set_type
    if flag == "zeroize":
        extra["hsm.zeroize"] = True
    elif flag == "quorum":
        extra["hsm.quorum"] = True
    uid = _key_uid(esn, appname, ident, key_hash)
    if uid:
        fields["key_uid"] = uid
        fields["key_kind"] = "key"
        if ident:
            fields["key_name"] = ident
        if appname:
            fields["key_vault"] = appname
    if user:
        fields["user_id"] = user
        fields["user_name"] = user
        fields["principal_type"] = "client"
    elif card_set:
        fields["user_id"] = f"cardset:{card_set}"
        fields["user_name"] = card_set
        fields["principal_type"] = "card_set"
    if source:
        fields["source_address"] = source
        ip = clean_ip(source)
        if ip:
            fields["source_ip"] = ip
    if outcome == "failure" and message:
        fields["error_message"] = message
    if parser.options.include_original:
        fields["original"] = raw.decode("utf-8", "replace")
    return new_event(
        timestamp=timestamp,
        event_id=event_id,
        dataset=DATASET,
        provider=PROVIDER,
        action=command,
        outcome=outcome,
        operation=operation,
        log_file_path=path,
        log_offset=offset,
        error_code=error_code,
        key_provider="nshield",
        extra=extra,
        **fields,
    )


def _split_header(cef: str) -> list[str] | None:
    """'CEF:0|a|b|...' -> the 7 header fields + extension, honouring '\\|' escapes."""
    fields: list[str] = []
    cur: list[str] = []
    i = 0
    n = len(cef)
    while i < n and len(fields) < 7:
        ch = cef[i]
        if ch == "\\" and i + 1 < n:
            cur.append(cef[i + 1])
            i += 2
            continue
        if ch == "|":
            fields.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    if len(fields) < 7:
        return None
    fields.append(cef[i:])
    return fields


def _unescape(value: str) -> str:
    if "\\" not in value:
        return value.strip()
    return (
        value.replace("\\\\", "\x00")
        .replace("\\=", "=")
        .replace("\\n", "\n")
        .replace("\\r", "\r")
        .replace("\x00", "\\")
        .strip()
    )


def _extension(ext: str) -> dict[str, str]:
    """CEF 'k1=v one k2=v2' -> dict; a value runs until the next unescaped ' key='."""
    out: dict[str, str] = {}
    key: str | None = None
    value: list[str] = []
    for token in ext.split(" "):
        eq = token.find("=")
        while eq > 0 and token[eq - 1] == "\\":
            eq = token.find("=", eq + 1)
        name = token[:eq] if eq > 0 else ""
        if name and name.replace("_", "").replace(".", "").isalnum():
            if key is not None:
                out[key] = _unescape(" ".join(value))
            key, value = name, [token[eq + 1 :]]
        elif key is not None:
            value.append(token)
    if key is not None:
        out[key] = _unescape(" ".join(value))
    return out


def _cef_time(value: str | None) -> str | None:
    """rt: epoch ms, or 'MMM dd yyyy HH:mm:ss[.SSS]' (UTC); None when unreadable."""
    if not value:
        return None
    v = value.strip()
    if v.isdigit():
        try:
            return epoch_ms_iso(int(v))
        except (ValueError, OverflowError, OSError):
            return None
    parts = v.split()
    if len(parts) >= 4 and parts[2].isdigit() and parts[1].isdigit():
        month = month_number(parts[0])
        if month is not None:
            try:
                return hms_to_iso(int(parts[2]), month, int(parts[1]), parts[3])
            except BadTimestamp:
                return None
    try:
        return normalize_iso(v)
    except BadTimestamp:
        return None


@register
class NShieldCefParser(LogParser):
    """nShield audit records in CEF (firmware < 13.5), one per line, syslog header optional."""

    id = "hsm.nshield.cef"
    dataset = DATASET
    description = "Entrust nShield CEF audit log (firmware < 13.5)"

    def sniff(self, head: bytes) -> int:
        try:
            at = head.find(b"CEF:")
            if at < 0:
                return 0
            window = head[at : at + 200].lower()
            if b"nshield" in window or b"ncipher" in window:
                return 95
        except Exception:  # sniff must never raise
            return 0
        return 0

    def parse(self, stream: IO[bytes], path: str) -> Iterator[ParseOutcome]:
        for offset, raw in iter_lines(stream, self.options.max_line_bytes):
            if raw.startswith(OVERLONG):
                yield too_long(path, offset, raw, DATASET, self.options.max_line_bytes)
                continue
            yield self._line(raw, path, offset)

    @per_record(DATASET)
    def _line(self, raw: bytes, path: str, offset: int) -> ParseOutcome:
        line = raw.decode("utf-8", "replace")
        at = line.find("CEF:")
        if at < 0:
            return Skipped("not_cef", path, offset)
        header = _split_header(line[at:])
        if header is None:
            return quarantine(
                "unknown_shape",
                path,
                offset,
                raw,
                DATASET,
                "CEF header has fewer than 7 '|'-separated fields",
            )
        _version, _vendor, _product, _dev_version, signature, name, _severity, ext = header
        x = _extension(ext)
        labels = {v.lower(): x.get(k[:-5]) for k, v in x.items() if k.endswith("Label")}
        timestamp = _cef_time(x.get("rt") or x.get("end") or x.get("start"))
        if timestamp is None:
            return quarantine(
                "bad_timestamp",
                path,
                offset,
                raw,
                DATASET,
                f"no readable rt in CEF extension: {x.get('rt')!r}"[:200],
            )
        command = (
            signature.strip()
            if signature.strip() and not signature.strip().isdigit()
            else name.strip()
        )
        if not command:
            return quarantine(
                "missing_field", path, offset, raw, DATASET, "CEF signature id and name are empty"
            )
        esn = x.get("deviceExternalId") or labels.get("esn")
        seq = labels.get("seq") or labels.get("seqno") or labels.get("sequence")
        event_id = stable_id(DATASET, esn, seq) if esn and seq else stable_id(DATASET, raw)
        return _build(
            self,
            timestamp=timestamp,
            event_id=event_id,
            command=command,
            status=x.get("reason"),
            cef_outcome=x.get("outcome"),
            esn=esn,
            appname=labels.get("appname"),
            ident=labels.get("ident"),
            key_hash=labels.get("keyhash"),
            card_set=labels.get("cardset"),
            card_set_type=labels.get("cardsettype"),
            user=x.get("suser"),
            source=x.get("src"),
            seq=seq,
            raw=raw,
            path=path,
            offset=offset,
            message=x.get("msg"),
        )


def _str(value: Any) -> str | None:
    if isinstance(value, str):
        return value or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


@register
class NShieldAuditJsonParser(LogParser):
    """nShield nCore audit records (firmware >= 13.5) exported as JSON."""

    id = "hsm.nshield.ncore"
    dataset = DATASET
    description = "Entrust nShield nCore structured audit log (firmware >= 13.5), JSON"

    def sniff(self, head: bytes) -> int:
        try:
            body = head[first_significant_byte(head) :]
            if body[:1] not in (b"{", b"["):
                return 0
            if b'"esn"' in body and (b'"command"' in body or b'"cmd"' in body):
                return 85
        except Exception:  # sniff must never raise
            return 0
        return 0

    def parse(self, stream: IO[bytes], path: str) -> Iterator[ParseOutcome]:
        for offset, raw, record, error, _c in json_records(
            stream, self.options.max_line_bytes, ("records", "events")
        ):
            if error is not None:
                reason, _, detail = error.partition(":")
                yield quarantine(reason, path, offset, raw or b"", DATASET, detail or None)
                continue
            yield self._record(record, raw, path, offset)

    @per_record(DATASET)
    def _record(self, r: Any, raw: bytes | None, path: str, offset: int) -> ParseOutcome:
        if not isinstance(r, dict):
            return quarantine(
                "not_an_object",
                path,
                offset,
                raw or orjson.dumps(r),
                DATASET,
                f"record is {type(r).__name__}",
            )
        raw_bytes = raw or orjson.dumps(r)
        command = _str(r.get("command")) or _str(r.get("cmd"))
        if command is None:
            return quarantine(
                "missing_field",
                path,
                offset,
                raw_bytes,
                DATASET,
                "nCore audit record has no command",
            )
        time_value = r.get("time", r.get("timestamp"))
        if not isinstance(time_value, str):
            return quarantine(
                "bad_timestamp", path, offset, raw_bytes, DATASET, "time is missing or not a string"
            )
        try:
            timestamp = normalize_iso(time_value)
        except BadTimestamp:
            return quarantine(
                "bad_timestamp",
                path,
                offset,
                raw_bytes,
                DATASET,
                f"unreadable time {time_value[:60]!r}",
            )
        esn = _str(r.get("esn")) or _str(r.get("module_esn"))
        seq = _str(r.get("seqno")) or _str(r.get("seq"))
        key_value = r.get("key")
        key: dict[str, Any] = key_value if isinstance(key_value, dict) else {}
        cardset = r.get("cardset")
        card_name = card_type = None
        if isinstance(cardset, dict):
            card_name = _str(cardset.get("name")) or _str(cardset.get("hash"))
            card_type = _str(cardset.get("type"))
        else:
            card_name = _str(cardset)
        client_value = r.get("client")
        client: dict[str, Any] = client_value if isinstance(client_value, dict) else {}
        status = _str(r.get("status")) or _str(r.get("result"))
        event_id = stable_id(DATASET, esn, seq) if esn and seq else stable_id(DATASET, raw_bytes)
        return _build(
            self,
            timestamp=timestamp,
            event_id=event_id,
            command=command,
            status=status,
            cef_outcome=None,
            esn=esn,
            appname=_str(key.get("appname")),
            ident=_str(key.get("ident")),
            key_hash=_str(key.get("hash")),
            card_set=card_name,
            card_set_type=card_type,
            user=_str(client.get("user")),
            source=_str(client.get("ip")),
            seq=seq,
            raw=raw_bytes,
            path=path,
            offset=offset,
            message=_str(r.get("message")),
        )
