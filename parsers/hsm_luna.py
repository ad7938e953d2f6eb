"""Thales Luna HSM logs -> KeyEvent (dataset `hsm.luna`).

`LunaSyslogParser` reads Luna Network HSM appliance logs, one line per record:

* LunaSH command logging (facility local5, documented verbatim in the Luna 7 "Luna Shell:
  Command Logging" page): `2012 Feb 29 12:05:01 myLuna  local5 info  lunash [1234]: info :
  0 : Command: hsm show  : admin : Console` (runs of two spaces; ` : `-separated level,
  return code, command, appliance user, connection `Console` or `<ip>/<port>`), the login
  form `... : Lush user login : admin : 192.168.0.100/40847`, and the warnings `HSM Admin
  Login: incorrect password or PED key` / `...: HSM Zeroized due to three consecutive bad
  login attempts.`
* kernel HSM alarms (Luna 7.1 "Notes About Logging"): `... kern info kernel: k7pf0: [HSM]
  ALM2006: HSM decommissioned by FW` -> admin_other, `hsm.alarm` true, `hsm.alarm_code`,
  outcome unknown (a notice, not an attempt); zeroize/decommission alarms also set
  `hsm.zeroize`.
* HSM audit records forwarded by remote audit logging (facility local3, Luna 7.3). The
  docs give the record's content but not its exact text: when the event occurred, HSM
  serial number, session, access id, partition, role (Luna 7.7+ role ids: admin
  partition Administrator 0 / HSM SO 1 / Auditor 8; application partition CO 0 / PSO 1 /
  CU 5 / LCO 9), event (LUNA_LOGIN, LUNA_GENERATE_KEY, ...) and return value (0 =
  success), object handle. ASSUMED record text (the layout of Luna audit files):
  `<seq>,<MM/DD/YY HH:MM:SS>,S/N <serial> session <n> Access <access-id> [<actor words>]
  operation <LUNA_EVENT> returned <RC_NAME>(0x<hex>) [name=value ...]` with optional
  `container=`/`partition=`, `role=`, `handle=`, `label=`, `user=` tokens. The record may
  stand alone (the `%msg:F,94:2%` rsyslog template of the 7.3 page writes only the
  record), follow any syslog header, or sit in the second `^`-separated field of the
  message (what that template extracts). Record times are taken as UTC. Session events
  (LUNA_OPEN_SESSION, LUNA_CLOSE_SESSION, ..._ACCESS) are skipped (`session_event`).

Line accounting: every non-blank line is a record. Lines with a recognised syslog header
from other programs are skipped (`not_hsm_event`); lines that are not log lines at all
(prose around the examples in a doc page) are skipped (`not_a_log_line`); a line that
starts with a syslog timestamp and stops there is quarantined (`truncated_record`). The
sniffer only claims files that contain at least one Luna line (LunaSH, `[HSM] ALM`
alarm, or an audit record), so doc pages without any example are `unrecognized_format`.

`LunaCloudAuditParser` reads Luna Cloud HSM (DPoD) service audit logs: NDJSON, or the
JSON array the DPoD Audit Query API delivers (offset = element index). Fields (names
matched case-insensitively): time (`2022-03-10 15:29:01 UTC`), source
(`thales/cloudhsm/<partitionID>`), resourceid (service id), actorid (client id),
tenantid, action (LUNA_* short code), status, meta. ASSUMED: meta is an object (or a
JSON string) that may carry the object's OUID (`ouid`), `handle`, `label`, the HSM
`role`, and the client address (`clientIp` / `sourceIp` / `ip`); status is `success` /
`ok` / `CKR_OK` / `RC_OK` for success, anything else is a failure with that code.
event.id = stable_id(dataset, time, source, actorid, action, status, meta) since the
record has no id of its own.

Key identity: `luna://<HSM serial>/<partition>/<handle, else label>` (`admin` when the
record names no partition); DPoD: `luna://dpod/<partitionID>/<ouid, else handle, else
label>`.
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
    address_ip,
    first_significant_byte,
    json_records,
    month_number,
    parse_syslog,
    us_date_to_iso,
)
from parsers.netaddr import clean_ip
from parsers.schema import Outcome, new_event
from parsers.timeutil import BadTimestamp, normalize_iso

DATASET: Final = "hsm.luna"

# LUNA_* event -> (operation, category, flag); flags: session, zeroize, user, quorum
EVENTS: Final[dict[str, tuple[str, str, str]]] = {
    "LUNA_LOGIN": ("login", "HSM Access", ""),
    "LUNA_HA_LOGIN": ("login", "HSM Access", ""),
    "LUNA_LOGOUT": ("admin_other", "HSM Access", ""),
    "LUNA_LOGOUT_OTHER": ("admin_other", "HSM Access", ""),
    "LUNA_MODIFY_OBJECT": ("update_policy", "HSM Access", ""),
    "LUNA_OPEN_SESSION": ("admin_other", "HSM Access", "session"),
    "LUNA_CLOSE_SESSION": ("admin_other", "HSM Access", "session"),
    "LUNA_CLOSE_ALL_SESSIONS": ("admin_other", "HSM Access", "session"),
    "LUNA_OPEN_ACCESS": ("admin_other", "HSM Access", "session"),
    "LUNA_CLEAN_ACCESS": ("admin_other", "HSM Access", "session"),
    "LUNA_CLOSE_ACCESS": ("admin_other", "HSM Access", "session"),
    "LUNA_LOAD_CUSTOM_MODULE": ("admin_other", "HSM Access", ""),
    "LUNA_LOAD_ENCRYPTED_CUSTOM_MODULE": ("admin_other", "HSM Access", ""),
    "LUNA_UNLOAD_CUSTOM_MODULE": ("admin_other", "HSM Access", ""),
    "LUNA_EXECUTE_CUSTOM_COMMAND": ("admin_other", "HSM Access", ""),
    "LUNA_GENERATE_KEY": ("create", "Key Management", ""),
    "LUNA_GENERATE_KEY_PAIR": ("create", "Key Management", ""),
    "LUNA_CREATE_OBJECT": ("import", "Key Management", ""),
    "LUNA_COPY_OBJECT": ("create", "Key Management", ""),
    "LUNA_DESTROY_OBJECT": ("destroy", "Key Management", ""),
    "LUNA_WRAP_KEY": ("wrap", "Key Management", ""),
    "LUNA_UNWRAP_KEY": ("unwrap", "Key Management", ""),
    "LUNA_DERIVE_KEY": ("derive", "Key Management", ""),
    "LUNA_EXTRACT": ("export", "Key Management", ""),
    "LUNA_INSERT": ("import", "Key Management", ""),
    "LUNA_CLONE_AS_SOURCE": ("export", "Key Management", ""),
    "LUNA_CLONE_AS_TARGET": ("import", "Key Management", ""),
    "LUNA_CREATE_CONTAINER": ("admin_other", "HSM Management", ""),
    "LUNA_DELETE_CONTAINER": ("admin_other", "HSM Management", ""),
    "LUNA_ZEROIZE": ("admin_other", "HSM Management", "zeroize"),
    "LUNA_FACTORY_RESET": ("admin_other", "HSM Management", "zeroize"),
    "LUNA_INIT_TOKEN": ("admin_other", "HSM Management", "zeroize"),
    "LUNA_INIT_ROLE": ("admin_other", "HSM Management", "user"),
    "LUNA_CREATE_USER": ("admin_other", "HSM Management", "user"),
    "LUNA_DELETE_USER": ("admin_other", "HSM Management", "user"),
    "LUNA_SET_PIN": ("admin_other", "HSM Management", "user"),
    "LUNA_SET_MOFN": ("admin_other", "HSM Management", "quorum"),
    "LUNA_SET_POLICY": ("admin_other", "HSM Management", ""),
    "LUNA_SET_CONTAINER_POLICY": ("admin_other", "HSM Management", ""),
    "LUNA_UPDATE_FIRMWARE": ("admin_other", "HSM Management", ""),
}

# key-usage events are families (LUNA_ENCRYPT_INIT, LUNA_ENCRYPT_SINGLEPART, ...)
USAGE_PREFIXES: Final[tuple[tuple[str, str], ...]] = (
    ("LUNA_ENCRYPT", "encrypt"),
    ("LUNA_DECRYPT", "decrypt"),
    ("LUNA_SIGN", "sign"),
    ("LUNA_VERIFY", "verify"),
)

ADMIN_ROLES: Final[dict[str, str]] = {
    "0": "administrator",
    "1": "hsm_security_officer",
    "8": "auditor",
}
PARTITION_ROLES: Final[dict[str, str]] = {
    "0": "crypto_officer",
    "1": "partition_security_officer",
    "5": "crypto_user",
    "9": "limited_crypto_officer",
}
ROLE_WORDS: Final[dict[str, str]] = {
    "so": "security_officer",
    "co": "crypto_officer",
    "cu": "crypto_user",
    "user": "crypto_officer",
    "au": "auditor",
    "lco": "limited_crypto_officer",
    "pso": "partition_security_officer",
    "administrator": "administrator",
}
OK_CODES: Final[frozenset[str]] = frozenset(
    ["RC_OK", "LUNA_RET_OK", "CKR_OK", "OK", "SUCCESS", "0", "0X00000000"]
)

# LunaSH: (first word, second word) -> (operation, flag)
LUNASH: Final[dict[tuple[str, str], tuple[str, str]]] = {
    ("hsm", "login"): ("login", ""),
    ("hsm", "logout"): ("admin_other", ""),
    ("hsm", "zeroize"): ("admin_other", "zeroize"),
    ("hsm", "factoryreset"): ("admin_other", "zeroize"),
    ("hsm", "init"): ("admin_other", "zeroize"),
    ("partition", "create"): ("admin_other", "partition"),
    ("partition", "delete"): ("admin_other", "partition"),
    ("partition", "clear"): ("admin_other", "partition"),
    ("partition", "init"): ("admin_other", "partition"),
    ("user", "add"): ("admin_other", "user"),
    ("user", "delete"): ("admin_other", "user"),
    ("user", "password"): ("admin_other", "user"),
    ("user", "role"): ("admin_other", "user"),
}
READ_VERBS: Final[frozenset[str]] = frozenset(
    ["show", "list", "display", "status", "tail", "view", "get", "verify"]
)
SECRET_OPTION_MARKERS: Final[tuple[str, ...]] = ("pass", "pw", "pin", "secret")
APPLIANCE_ROLES: Final[dict[str, str]] = {
    "admin": "appliance_admin",
    "operator": "appliance_operator",
    "monitor": "appliance_monitor",
    "audit": "appliance_auditor",
}


@lru_cache(maxsize=1024)
def _event(name: str) -> tuple[str, str, str]:
    hit = EVENTS.get(name)
    if hit is not None:
        return hit
    for prefix, op in USAGE_PREFIXES:
        if name.startswith(prefix):
            return op, "Key Usage", ""
    if name.startswith("LUNA_LOG"):
        return "admin_other", "Log Access", ""
    return "admin_other", "", ""


def _rc_success(rc: str) -> bool:
    """'RC_OK(0x00000000)' / 'LUNA_RET_OK' / 'CKR_OK' / '0' -> True."""
    name, _, rest = rc.partition("(")
    if name.upper() in OK_CODES:
        return True
    hex_part = rest.rstrip(")")
    if hex_part:
        try:
            return int(hex_part, 16) == 0
        except ValueError:
            return False
    return False


def _redact_command(command: str) -> str:
    """Drop the value of password-like options so secrets never reach the event."""
    words = command.split()
    out = []
    hide = False
    for w in words:
        if hide:
            out.append("***")
            hide = False
            continue
        out.append(w)
        if w.startswith("-") and any(m in w.lower() for m in SECRET_OPTION_MARKERS):
            hide = True
    return " ".join(out)


def _option(words: list[str], *names: str) -> str | None:
    for i, w in enumerate(words[:-1]):
        if w.lower() in names:
            return words[i + 1]
    return None


class _AuditRecord:
    """Fields of one (assumed-layout) Luna audit record."""

    __slots__ = (
        "access",
        "actor_words",
        "event",
        "handle",
        "label",
        "partition",
        "rc",
        "role",
        "seq",
        "serial",
        "session",
        "timestamp",
        "user",
    )

    def __init__(self) -> None:
        self.seq: str | None = None
        self.timestamp: str | None = None
        self.serial: str | None = None
        self.session: str | None = None
        self.access: str | None = None
        self.actor_words: str = ""
        self.event: str | None = None
        self.rc: str | None = None
        self.partition: str | None = None
        self.role: str | None = None
        self.handle: str | None = None
        self.label: str | None = None
        self.user: str | None = None


def _is_audit_text(text: str) -> bool:
    return "S/N " in text and "operation" in text


def _parse_audit(text: str) -> _AuditRecord | None:
    """'<seq>,<MM/DD/YY HH:MM:SS>,S/N ... operation LUNA_X returned RC(0x..) k=v' -> fields.

    None when the text is not an audit record at all; a record whose serial or event is
    missing comes back with them unset. Raises BadTimestamp for an unreadable record time.
    """
    rec = _AuditRecord()
    body = text.strip()
    if body[:1].isdigit():
        parts = body.split(",", 2)
        if len(parts) == 3 and parts[0].strip().isdigit():
            rec.seq = parts[0].strip()
            date, _, hms = parts[1].strip().partition(" ")
            rec.timestamp = us_date_to_iso(date, hms.strip())
            body = parts[2]
    words = body.split()
    i = 0
    n = len(words)
    while i < n:
        w = words[i]
        nxt = words[i + 1] if i + 1 < n else None
        if w == "S/N" and nxt:
            rec.serial = nxt
            i += 2
            continue
        if w == "session" and nxt and rec.session is None:
            rec.session = nxt
            i += 2
            continue
        if w == "Access" and nxt and rec.access is None:
            rec.access = nxt
            j = i + 2
            actor = []
            while j < n and words[j] != "operation" and "=" not in words[j]:
                actor.append(words[j])
                j += 1
            rec.actor_words = " ".join(actor)
            i = j
            continue
        if w == "operation" and nxt:
            rec.event = nxt
            i += 2
            continue
        if w == "returned" and nxt:
            rec.rc = nxt
            i += 2
            continue
        key, eq, value = w.partition("=")
        if eq and value:
            k = key.lower()
            value = value.rstrip(",)")
            if k in ("container", "partition"):
                rec.partition = value
            elif k == "role":
                rec.role = value
            elif k in ("handle", "object", "objecthandle"):
                rec.handle = value
            elif k == "label":
                rec.label = value
            elif k == "user":
                rec.user = value
        i += 1
    if rec.event is None and rec.serial is None:
        return None
    return rec


def _sniff_audit(text: str) -> bool:
    try:
        rec = _parse_audit(text)
    except BadTimestamp:
        return False
    return rec is not None and rec.event is not None and rec.serial is not None


def _role_name(rec: _AuditRecord) -> str | None:
    if rec.role is not None:
        table = PARTITION_ROLES if rec.partition else ADMIN_ROLES
        return table.get(rec.role, f"role_{rec.role}")
    first = rec.actor_words.split(" ", 1)[0].lower() if rec.actor_words else ""
    return ROLE_WORDS.get(first)


def _starts_like_syslog_time(line: str) -> bool:
    tok = line.split(None, 3)
    if len(tok) >= 3 and tok[0].isdigit() and len(tok[0]) == 4:
        return month_number(tok[1]) is not None
    return (
        len(tok) >= 3
        and month_number(tok[0]) is not None
        and tok[1].isdigit()
        and tok[2].count(":") == 2
    )


@register
class LunaSyslogParser(LogParser):
    """Luna Network HSM appliance syslog: LunaSH commands, HSM alarms, HSM audit records."""

    id = "hsm.luna.syslog"
    dataset = DATASET
    description = "Thales Luna Network HSM syslog (lunash, kernel ALM alarms, audit local3)"

    def sniff(self, head: bytes) -> int:
        try:
            markers = (b"lunash", b"[HSM] ALM", b"operation LUNA_")
            if not any(m in head for m in markers):
                return 0
            text = head.decode("utf-8", "replace")
            for line in text.splitlines()[:2000]:
                if "lunash" in line or "[HSM] ALM" in line:
                    try:
                        sl = parse_syslog(line)
                    except BadTimestamp:  # a spoofed first line must not hide the file
                        continue
                    if sl is not None and (sl.program == "lunash" or "[HSM] ALM" in sl.message):
                        return 90
                elif (
                    "operation LUNA_" in line
                    and _is_audit_text(line)
                    and _sniff_audit(line.split("^", 2)[1] if "^" in line else line)
                ):
                    return 90
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
        try:
            sl = parse_syslog(line)
        except BadTimestamp as exc:
            return quarantine("bad_timestamp", path, offset, raw, DATASET,
                              f"unreadable syslog header time {str(exc)[:80]!r}")
        if sl is None:
            if _is_audit_text(line):
                return self._audit(
                    line, header_ts=None, host=None, raw=raw, path=path, offset=offset
                )
            if _starts_like_syslog_time(line):
                return quarantine(
                    "truncated_record",
                    path,
                    offset,
                    raw,
                    DATASET,
                    "syslog header without a message",
                )
            return Skipped("not_a_log_line", path, offset)
        msg = sl.message
        if sl.program == "lunash":
            return self._lunash(
                timestamp=sl.timestamp, host=sl.host, msg=msg, raw=raw, path=path, offset=offset
            )
        alarm = msg.find("[HSM] ALM")
        if alarm >= 0:
            return self._alarm(
                timestamp=sl.timestamp,
                host=sl.host,
                program=sl.program,
                text=msg[alarm + 6 :],
                raw=raw,
                path=path,
                offset=offset,
            )
        if _is_audit_text(msg):
            return self._audit(
                msg, header_ts=sl.timestamp, host=sl.host, raw=raw, path=path, offset=offset
            )
        return Skipped("not_hsm_event", path, offset)

    def _base_extra(self, host: str | None, program: str | None) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if host:
            extra["hsm.syslog_host"] = host
        if program:
            extra["hsm.syslog_program"] = program
        return extra

    def _audit(
        self,
        msg: str,
        *,
        header_ts: str | None,
        host: str | None,
        raw: bytes,
        path: str,
        offset: int,
    ) -> ParseOutcome:
        if "^" in msg:  # the field the documented rsyslog template %msg:F,94:2% extracts
            msg = msg.split("^", 2)[1]
        try:
            rec = _parse_audit(msg)
        except BadTimestamp as exc:
            return quarantine(
                "bad_timestamp",
                path,
                offset,
                raw,
                DATASET,
                f"unreadable audit record time: {msg.strip()[:40]!r} ({exc})",
            )
        if rec is None:
            return quarantine(
                "unknown_shape",
                path,
                offset,
                raw,
                DATASET,
                "audit record without S/N and operation",
            )
        if rec.event is None or rec.serial is None:
            return quarantine(
                "truncated_record",
                path,
                offset,
                raw,
                DATASET,
                "audit record lacks its serial number or operation",
            )
        timestamp = rec.timestamp or header_ts
        if timestamp is None:
            return quarantine(
                "bad_timestamp",
                path,
                offset,
                raw,
                DATASET,
                "no usable timestamp (no record time, syslog header has no year)",
            )
        event = rec.event or ""
        operation, category, flag = _event(event)
        if flag == "session":
            return Skipped("session_event", path, offset)
        outcome: Outcome
        if rec.rc is None:
            outcome, error_code = "unknown", None
        elif _rc_success(rec.rc):
            outcome, error_code = "success", None
        else:
            outcome, error_code = "failure", rec.rc.partition("(")[0]
        partition = rec.partition
        extra = self._base_extra(host, "luna_audit" if host else None)
        extra["hsm.serial"] = rec.serial
        if partition:
            extra["hsm.partition"] = partition
        if rec.seq is not None:
            extra["hsm.sequence_no"] = rec.seq
        if category:
            extra["hsm.event_category"] = category
        if rec.access:
            extra["hsm.access_id"] = rec.access
        if rec.rc:
            extra["hsm.return_code"] = rec.rc
        if flag == "zeroize":
            extra["hsm.zeroize"] = True
        elif flag == "quorum":
            extra["hsm.quorum"] = True
        role = _role_name(rec)
        if role:
            extra["hsm.role"] = rec.role if rec.role is not None else rec.actor_words
        fields: dict[str, Any] = {}
        part_seg = partition or "admin"
        if rec.handle or rec.label:
            fields["key_uid"] = f"luna://{rec.serial}/{part_seg}/{rec.handle or rec.label}"
            fields["key_kind"] = "key"
            if rec.handle:
                extra["hsm.key_handle"] = rec.handle
        if rec.label:
            fields["key_name"] = rec.label
        if flag == "user" and rec.user:
            extra["hsm.target_user"] = rec.user
            actor_name = role
        else:
            actor_name = rec.user or role
        if actor_name:
            fields["user_id"] = f"{rec.serial}/{part_seg}/{actor_name}"
            fields["user_name"] = actor_name
            if role:
                fields["principal_type"] = role
        if rec.session:
            fields["session_id"] = f"{rec.serial}:{rec.access or '-'}:{rec.session}"
        if self.options.include_original:
            fields["original"] = raw.decode("utf-8", "replace")
        return new_event(
            timestamp=timestamp,
            event_id=stable_id(DATASET, rec.serial, rec.seq, timestamp, event),
            dataset=DATASET,
            provider="luna_hsm",
            action=event,
            outcome=outcome,
            operation=operation,
            log_file_path=path,
            log_offset=offset,
            error_code=error_code,
            key_provider="luna",
            key_vault=f"{rec.serial}/{part_seg}",
            extra=extra,
            **fields,
        )

    def _alarm(
        self,
        *,
        timestamp: str | None,
        host: str | None,
        program: str | None,
        text: str,
        raw: bytes,
        path: str,
        offset: int,
    ) -> ParseOutcome:
        if timestamp is None:
            return quarantine(
                "bad_timestamp", path, offset, raw, DATASET, "RFC 3164 header has no year"
            )
        code, _, description = text.partition(":")
        code = code.strip()
        description = description.strip()
        extra = self._base_extra(host, program)
        extra["hsm.alarm"] = True
        extra["hsm.alarm_code"] = code
        low = description.lower()
        if "zeroiz" in low or "decommission" in low:
            extra["hsm.zeroize"] = True
        fields: dict[str, Any] = {}
        if self.options.include_original:
            fields["original"] = raw.decode("utf-8", "replace")
        return new_event(
            timestamp=timestamp,
            event_id=stable_id(DATASET, raw),
            dataset=DATASET,
            provider="luna_hsm",
            action=code,
            outcome="unknown",
            operation="admin_other",
            log_file_path=path,
            log_offset=offset,
            error_message=description or None,
            key_provider="luna",
            extra=extra,
            **fields,
        )

    def _lunash(
        self,
        *,
        timestamp: str | None,
        host: str | None,
        msg: str,
        raw: bytes,
        path: str,
        offset: int,
    ) -> ParseOutcome:
        if timestamp is None:
            return quarantine(
                "bad_timestamp", path, offset, raw, DATASET, "RFC 3164 header has no year"
            )
        extra = self._base_extra(host, "lunash")
        fields: dict[str, Any] = {}
        parts = [p.strip() for p in msg.split(" : ")]
        error_code: str | None = None
        error_message: str | None = None
        outcome: Outcome
        if len(parts) >= 5 and parts[1].lstrip("-").isdigit():
            rc = parts[1]
            body = " : ".join(parts[2:-2])
            user, connection = parts[-2], parts[-1]
            outcome = "success" if rc == "0" else "failure"
            if rc != "0":
                error_code = rc
            extra["hsm.return_code"] = rc
            fields["user_id"] = f"{host or 'luna'}/{user}"
            fields["user_name"] = user
            fields["principal_type"] = APPLIANCE_ROLES.get(user, "appliance_user")
            fields["source_address"] = connection
            ip = address_ip(connection)
            if ip:
                fields["source_ip"] = ip
            if body.startswith("Command:"):
                command = _redact_command(body[len("Command:") :].strip())
                extra["hsm.command"] = command
                words = command.split()
                plain = [w.lower() for w in words if not w.startswith("-")]
                head_words = []
                for w in words:  # the verb: command words before the first option
                    if w.startswith("-"):
                        break
                    head_words.append(w)
                action = " ".join(head_words) or command
                operation, flag = LUNASH.get(
                    (plain[0], plain[1]) if len(plain) >= 2 else ("", ""), ("", "")
                )
                if not operation:
                    last = plain[-1] if plain else ""
                    operation = (
                        ("list" if last == "list" else "describe")
                        if last in READ_VERBS
                        else "admin_other"
                    )
                if flag == "zeroize":
                    extra["hsm.zeroize"] = True
                elif flag == "partition":
                    name = _option(words, "-partition", "-par", "-p", "-name", "-n")
                    if name:
                        extra["hsm.partition"] = name
                elif flag == "user":
                    target = _option(words, "-username", "-user", "-u", "-name", "-n")
                    if target:
                        extra["hsm.target_user"] = target
            elif body.lower().startswith("lush user login"):
                action, operation = "Lush user login", "login"
            else:
                action, operation = body, "admin_other"
        else:
            # 'HSM Admin Login: incorrect password or PED key' / '...: HSM Zeroized due to ...'
            subject, _, detail = msg.partition(":")
            detail = detail.strip()
            action = subject.strip() or msg.strip()
            low = detail.lower()
            # a zeroization notice is not an attempt: outcome unknown, like the kernel alarms
            outcome = (
                "failure"
                if ("incorrect" in low or "fail" in low) and "zeroized" not in low
                else "unknown"
            )
            operation = (
                "login" if "login" in action.lower() and "zeroized" not in low else "admin_other"
            )
            if "zeroized" in low:
                extra["hsm.zeroize"] = True
                extra["hsm.alarm"] = True
            error_message = detail or None
        if self.options.include_original:
            fields["original"] = raw.decode("utf-8", "replace")
        return new_event(
            timestamp=timestamp,
            event_id=stable_id(DATASET, raw),
            dataset=DATASET,
            provider="lunash",
            action=action,
            outcome=outcome,
            operation=operation,
            log_file_path=path,
            log_offset=offset,
            error_code=error_code,
            error_message=error_message,
            key_provider="luna",
            extra=extra,
            **fields,
        )


def _lower_keys(record: dict[str, Any]) -> dict[str, Any]:
    return {k.lower() if isinstance(k, str) else k: v for k, v in record.items()}


_DPOD_OK: Final[frozenset[str]] = frozenset(
    ["success", "succeeded", "ok", "ckr_ok", "rc_ok", "luna_ret_ok", "0"]
)


@register
class LunaCloudAuditParser(LogParser):
    """Luna Cloud HSM (DPoD) service audit records: NDJSON or a JSON array."""

    id = "hsm.luna.dpod"
    dataset = DATASET
    description = "Thales Luna Cloud HSM (DPoD) service audit JSON"

    def sniff(self, head: bytes) -> int:
        try:
            body = head[first_significant_byte(head) :]
            if body[:1] not in (b"{", b"["):
                return 0
            if b"thales/cloudhsm" in body:
                return 90
            low = body[:4096].lower()
            if b'"actorid"' in low and b'"action"' in low and b'"source"' in low:
                return 80
        except Exception:  # sniff must never raise
            return 0
        return 0

    def parse(self, stream: IO[bytes], path: str) -> Iterator[ParseOutcome]:
        for offset, raw, record, error, _c in json_records(
            stream, self.options.max_line_bytes, ("logs", "records", "events")
        ):
            if error is not None:
                reason, _, detail = error.partition(":")
                if reason == "invalid_json" and raw and ("\u201c".encode() in raw):
                    detail = "typographic quotes instead of JSON quotes; " + detail
                yield quarantine(reason, path, offset, raw or b"", DATASET, detail or None)
                continue
            yield self._record(record, raw, path, offset)

    @per_record(DATASET)
    def _record(self, record: Any, raw: bytes | None, path: str, offset: int) -> ParseOutcome:
        if not isinstance(record, dict):
            return quarantine(
                "not_an_object",
                path,
                offset,
                raw or orjson.dumps(record),
                DATASET,
                f"record is {type(record).__name__}",
            )
        r = _lower_keys(record)
        raw_bytes = raw or orjson.dumps(record)
        time_value, action, source = r.get("time"), r.get("action"), r.get("source")
        if not isinstance(action, str) or not isinstance(source, str):
            return quarantine(
                "missing_field",
                path,
                offset,
                raw_bytes,
                DATASET,
                "DPoD audit record needs source and action",
            )
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
        meta_value = r.get("meta")
        if isinstance(meta_value, str) and meta_value.startswith("{"):
            try:
                meta_value = orjson.loads(meta_value)
            except orjson.JSONDecodeError:
                meta_value = None
        meta = _lower_keys(meta_value) if isinstance(meta_value, dict) else {}
        partition = source.rsplit("/", 1)[-1] if source.startswith("thales/cloudhsm/") else source
        operation, category, flag = _event(action)
        if flag == "session":
            return Skipped("session_event", path, offset)
        status = r.get("status")
        error_code = None
        outcome: Outcome
        if isinstance(status, str) and status:
            if status.lower() in _DPOD_OK:
                outcome = "success"
            else:
                outcome, error_code = "failure", status
        else:
            outcome = "unknown"
        extra: dict[str, Any] = {"hsm.partition": partition}
        if category:
            extra["hsm.event_category"] = category
        for key, name in (("resourceid", "hsm.resource_id"), ("tenantid", "hsm.tenant_id")):
            v = r.get(key)
            if isinstance(v, str | int) and not isinstance(v, bool):
                extra[name] = str(v)
        if flag == "zeroize":
            extra["hsm.zeroize"] = True
        fields: dict[str, Any] = {}
        obj = None
        for key in ("ouid", "objectouid", "handle", "objecthandle", "label", "objectlabel"):
            v = meta.get(key)
            if isinstance(v, str | int) and not isinstance(v, bool) and str(v):
                obj = str(v)
                break
        if obj is not None:
            fields["key_uid"] = f"luna://dpod/{partition}/{obj}"
            fields["key_kind"] = "key"
        label = meta.get("label") or meta.get("objectlabel")
        if isinstance(label, str) and label:
            fields["key_name"] = label
        actor = r.get("actorid")
        role = meta.get("role")
        if isinstance(actor, str) and actor:
            fields["user_id"] = actor
            fields["principal_type"] = (
                ROLE_WORDS.get(role.lower(), snake_role(role))
                if isinstance(role, str) and role
                else "client"
            )
        if isinstance(role, str) and role:
            extra["hsm.role"] = role
        for key in ("clientip", "sourceip", "ip", "remoteaddr", "client_ip"):
            v = meta.get(key)
            if isinstance(v, str) and v:
                fields["source_address"] = v
                ip = clean_ip(v)
                if ip:
                    fields["source_ip"] = ip
                break
        if self.options.include_original:
            fields["original"] = raw_bytes.decode("utf-8", "replace")
        return new_event(
            timestamp=timestamp,
            event_id=stable_id(
                DATASET,
                time_value,
                source,
                actor,
                action,
                status,
                orjson.dumps(meta_value, option=orjson.OPT_SORT_KEYS)
                if isinstance(meta_value, dict | list)
                else meta_value,
            ),
            dataset=DATASET,
            provider="luna_cloud_hsm",
            action=action,
            outcome=outcome,
            operation=operation,
            log_file_path=path,
            log_offset=offset,
            error_code=error_code,
            key_provider="luna",
            key_vault=partition,
            cloud_provider="thales_dpod",
            extra=extra,
            **fields,
        )


@lru_cache(maxsize=256)
def snake_role(role: str) -> str:
    """'Crypto Officer' -> 'crypto_officer'."""
    return "_".join(role.lower().replace("-", " ").split()) or "client"
