"""AWS CloudHSM audit logs -> KeyEvent (dataset `hsm.cloudhsm`).

Three parsers, one per container, sharing the block interpreter and session tracking:

* `CloudHsmAuditTextParser` - classic HSM audit events as multi-line text blocks
  (`Time: MM/DD/YY HH:MM:SS.ffffff, usecs:<epoch us>`, `Sequence No : 0x..`, `Reboot
  counter`, `Command Type(hex)`, `Opcode : CN_X (0x..)`, `Session Handle`, `Response`,
  `Log type`, then user details or key handles), blocks separated by blank lines. The
  separator varies (`X : v`, `X: v`, `X<TAB>: v`): the key is whatever precedes the first
  colon, stripped. A new `Time` line also starts a new block (in case a blank line was
  lost). `log.offset` = byte offset of the block's first line.
* `CloudHsmCloudWatchParser` - the same blocks (and certificate-storage records) as
  shipped to CloudWatch Logs (group `/aws/cloudhsm/<cluster-id>`, one stream per HSM id,
  certificate storage in a stream named for the cluster): NDJSON of log events
  (`{"timestamp","message","logStreamName","logGroupName",...}`, offset = line byte
  offset), or a whole-file document from `aws logs filter-log-events` /
  `get-log-events` (`{"events":[...]}`) or a subscription-filter payload
  (`{"logGroup","logStream","owner","logEvents":[...]}`), offset = event index.
  Events whose message is neither a block nor a certificate-storage record are
  skipped (`not_audit_record`).
* `CloudHsmCertStoreParser` - PKCS#11 certificate-storage audit JSON, one record per line
  (`object_handle` 64-bit integer - kept exact: orjson keeps integers up to 2**64-1 and
  anything larger is re-read with the stdlib - or null on failure; `timestamp` epoch ms;
  `op_code` CreateObject | DestroyObject | SetAttributeValues; `response` OK or an error).

Identity. The HSM is not named inside a block. With CloudWatch the log stream is the HSM
id and the log group names the cluster; in a bare text file both are unknown and the
identity is `options.cloudhsm_cluster` when the options carry it, else `default`.
`keytrail.key.uid` = `cloudhsm://<cluster, else HSM id, else default>/<handle>` (handles are
cluster-wide: key synchronisation re-inserts a key under the same handle on every HSM).
`event.id` = stable_id(dataset, HSM identity, reboot counter, sequence no, usecs, opcode):
sequence numbers are per HSM and per boot, and because a bare file cannot tell HSMs apart
the time and opcode are added (the user-guide examples reuse (reboot 0x107, seq 0x2) for
two different events at the same microsecond on two HSMs); a block repeated verbatim
gets the same id, which is the right de-duplication. Certificate-storage records have
no vendor id: stable_id(dataset, record bytes).

Sessions. Key events carry no user: the actor is whoever logged in (CN_LOGIN) on the same
application connection. Handles of one connection differ only in the last hex digit
(observed: CN_LOGIN 0x7014006 / CN_CREATE_CO 0x7014007 / CN_LOGOUT 0x7014000;
0x2014005 / 0x2014004; 0xc008002 / 0xc008004; 0x7004004 / 0x7004003), so the connection
is `handle >> 4`, scoped by HSM identity and reboot counter (a reboot drops every
connection). The table is per parse call, bounded (LRU, 4096 connections). A successful
CN_LOGIN opens it, CN_LOGOUT / CN_APP_FINALIZE close it; failed logins never open one.
User-management blocks name the TARGET user (CN_CREATE_USER bob): it goes to
`hsm.target_user`/`hsm.user_type` and the actor comes from the session.
`user.id` = `<cluster-or-hsm>/<user name>` (CloudHSM users are cluster-wide).

Opcode mapping follows the CloudHSM audit-log reference; CN_EXTRACT_MASKED_OBJECT_USER
is mapped to `export` as the project asks, although the client also uses it for routine
cluster synchronisation (an extract on one HSM followed by an insert on another).
Unknown opcodes are `admin_other`, never quarantined.
"""

from __future__ import annotations

import io
from collections import OrderedDict
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
from parsers.framing import OVERLONG, tally_of
from parsers.hsm_common import (
    epoch_ms_iso,
    epoch_us_iso,
    first_significant_byte,
    json_records,
    loads_exact,
    us_date_to_iso,
)
from parsers.schema import KeyEvent, Outcome, new_event
from parsers.timeutil import BadTimestamp

DATASET: Final = "hsm.cloudhsm"
PROVIDER: Final = "cloudhsm.amazonaws.com"
DEFAULT_IDENTITY: Final = "default"
MAX_SESSIONS: Final = 4096
MAX_BLOCK_LINES: Final = 64

# opcode name -> (operation, flag); flags: login, logout, end, user, quorum, zeroize
OPCODES: Final[dict[str, tuple[str, str]]] = {
    "CN_LOGIN": ("login", "login"),
    "CN_LOGOUT": ("admin_other", "logout"),
    "CN_APP_FINALIZE": ("admin_other", "end"),
    "CN_APP_INIT": ("admin_other", ""),
    "CN_OPEN_SESSION": ("admin_other", ""),
    "CN_CLOSE_SESSION": ("admin_other", ""),
    "CN_CREATE_USER": ("admin_other", "user"),
    "CN_CREATE_CO": ("admin_other", "user"),
    "CN_CREATE_APPLIANCE_USER": ("admin_other", "user"),
    "CN_DELETE_USER": ("admin_other", "user"),
    "CN_CHANGE_PSWD": ("admin_other", "user"),
    "CN_CHANGE_USER_PSWD": ("admin_other", "user"),
    "CN_SET_M_VALUE": ("admin_other", "quorum"),
    "CN_APPROVE_TOKEN": ("admin_other", "quorum"),
    "CN_DELETE_TOKEN": ("admin_other", "quorum"),
    "CN_GET_TOKEN": ("admin_other", "quorum"),
    "CN_GENERATE_KEY": ("create", ""),
    "CN_GENERATE_KEY_PAIR": ("create", ""),
    "CN_CREATE_OBJECT": ("import", ""),
    "CN_INSERT_MASKED_OBJECT": ("import", ""),
    "CN_INSERT_MASKED_OBJECT_USER": ("import", ""),
    "CN_EXTRACT_MASKED_OBJECT": ("export", ""),
    "CN_EXTRACT_MASKED_OBJECT_USER": ("export", ""),
    "CN_WRAP_KEY": ("wrap", ""),
    "CN_UNWRAP_KEY": ("unwrap", ""),
    "CN_NIST_AES_WRAP": ("wrap", ""),
    "CN_NIST_AES_WRAP_NO_PAD": ("wrap", ""),
    "CN_NIST_AES_WRAP_PAD": ("wrap", ""),
    "CN_NIST_AES_UNWRAP": ("unwrap", ""),
    "CN_NIST_AES_UNWRAP_NO_PAD": ("unwrap", ""),
    "CN_NIST_AES_UNWRAP_PAD": ("unwrap", ""),
    "CN_DESTROY_OBJECT": ("destroy", ""),
    "CN_TOMBSTONE_OBJECT": ("destroy", ""),
    "CN_SHARE_OBJECT": ("grant", ""),
    "CN_SET_ATTRIBUTE": ("update_policy", ""),
    "CN_MODIFY_OBJECT": ("update_policy", ""),
    "CN_DERIVE_KEY": ("derive", ""),
    "CN_ZEROIZE": ("admin_other", "zeroize"),
    "CN_INIT_TOKEN": ("admin_other", "zeroize"),
    "CN_INIT_DONE": ("admin_other", ""),
    "CN_GEN_PSWD_ENC_KEY": ("admin_other", ""),
    "CN_BACKUP_BEGIN": ("admin_other", ""),
    "CN_BACKUP_END": ("admin_other", ""),
    "CN_RESTORE_BEGIN": ("admin_other", ""),
    "CN_RESTORE_END": ("admin_other", ""),
}

PRINCIPAL_TYPES: Final[dict[str, str]] = {
    "CN_CRYPTO_OFFICER": "crypto_officer",
    "CN_CRYPTO_USER": "crypto_user",
    "CN_APPLIANCE_USER": "appliance_user",
    "CN_CRYPTO_PRE_OFFICER": "precrypto_officer",
}

CERTSTORE_OPS: Final[dict[str, str]] = {
    "CreateObject": "create",
    "DestroyObject": "destroy",
    "SetAttributeValues": "update_policy",
}


@lru_cache(maxsize=1024)
def _opcode(name: str) -> tuple[str, str]:
    hit = OPCODES.get(name)
    if hit is not None:
        return hit
    if name.startswith("CN_NIST_AES_UNWRAP"):
        return "unwrap", ""
    if name.startswith("CN_NIST_AES_WRAP"):
        return "wrap", ""
    return "admin_other", ""


@lru_cache(maxsize=256)
def _principal_type(user_type: str) -> str:
    name = user_type.split(" (", 1)[0].strip()
    known = PRINCIPAL_TYPES.get(name)
    if known:
        return known
    return name.removeprefix("CN_").lower() or "unknown"


@lru_cache(maxsize=4096)
def _name_and_code(value: str) -> tuple[str, str | None]:
    """'CN_CREATE_USER (0x3)' -> ('CN_CREATE_USER', '0x3')."""
    paren = value.find(" (")
    if paren < 0 or not value.endswith(")"):
        return value.strip(), None
    return value[:paren].strip(), value[paren + 2 : -1].strip()


def _hex(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value, 16) if value[:2].lower() == "0x" else int(value, 10)
    except ValueError:
        return None


class _Sessions:
    """Bounded LRU: (hsm identity, reboot counter, connection) -> (user name, user type)."""

    def __init__(self) -> None:
        self._table: OrderedDict[tuple[str, int, int], tuple[str, str]] = OrderedDict()

    def open(self, key: tuple[str, int, int], user: tuple[str, str]) -> None:
        self._table[key] = user
        self._table.move_to_end(key)
        if len(self._table) > MAX_SESSIONS:
            self._table.popitem(last=False)

    def get(self, key: tuple[str, int, int]) -> tuple[str, str] | None:
        return self._table.get(key)

    def close(self, key: tuple[str, int, int]) -> None:
        self._table.pop(key, None)

    def items(self) -> list[tuple[tuple[str, int, int], tuple[str, str]]]:
        """Open sessions, least recently opened first."""
        return list(self._table.items())


class _Context:
    """Where blocks come from: HSM / cluster identity and the session table."""

    __slots__ = ("account", "cluster", "hsm", "sessions")

    def __init__(self, hsm: str | None, cluster: str | None, account: str | None = None) -> None:
        self.hsm = hsm
        self.cluster = cluster
        self.account = account
        self.sessions = _Sessions()


_KNOWN_KEYS: Final[frozenset[str]] = frozenset(
    [
        "sequence no",
        "reboot counter",
        "command type(hex)",
        "opcode",
        "session handle",
        "response",
        "log type",
        "user name",
        "user type",
        "priv/secret key handle",
        "public key handle",
        "key handle",
    ]
)


def _fields(lines: list[str]) -> tuple[dict[str, str], int]:
    """Block lines -> {lower-case key: value}, and the number of lines without a colon."""
    out: dict[str, str] = {}
    stray = 0
    for line in lines:
        key, sep, value = line.partition(":")
        if not sep:
            stray += 1
            continue
        out[key.strip().lower()] = value.strip()
    return out, stray


class _BlockInterpreter:
    """Turns one classic audit block into an outcome (shared by text and CloudWatch)."""

    def __init__(self, parser: LogParser) -> None:
        self.parser = parser
        self.default_identity = str(
            getattr(parser.options, "cloudhsm_cluster", DEFAULT_IDENTITY) or DEFAULT_IDENTITY
        )

    @per_record(DATASET)
    def outcome(
        self,
        lines: list[str],
        *,
        raw: bytes | str,
        path: str,
        offset: int,
        ctx: _Context,
        fallback_ms: int | None = None,
    ) -> ParseOutcome:
        f, stray = _fields(lines)
        if "time" not in f:
            if not f.keys() & _KNOWN_KEYS:
                return quarantine(
                    "unknown_shape",
                    path,
                    offset,
                    raw,
                    DATASET,
                    "not an audit block: no audit field",
                )
            return quarantine(
                "missing_field", path, offset, raw, DATASET, "no Time line in audit block"
            )
        missing = [k for k in ("sequence no", "reboot counter", "opcode", "response") if k not in f]
        if missing:
            return quarantine(
                "truncated_record",
                path,
                offset,
                raw,
                DATASET,
                "audit block lacks " + ", ".join(missing),
            )
        if stray:
            return quarantine(
                "unknown_shape",
                path,
                offset,
                raw,
                DATASET,
                f"{stray} line(s) without 'Key : value' in audit block",
            )
        # timestamp: usecs (exact, UTC), else the printed time, else CloudWatch's
        time_value = f["time"]
        usecs_text = time_value.rpartition("usecs:")[2].strip() if "usecs:" in time_value else ""
        timestamp: str | None = None
        usecs = -1
        try:
            if usecs_text.isdigit():
                usecs = int(usecs_text)
                timestamp = epoch_us_iso(usecs)
            else:
                date, _, hms = time_value.split(",", 1)[0].strip().partition(" ")
                timestamp = us_date_to_iso(date, hms.strip())
        except (BadTimestamp, ValueError, OverflowError, OSError):
            usecs = -1
            if fallback_ms is not None:
                try:
                    timestamp = epoch_ms_iso(fallback_ms)
                except (ValueError, OverflowError, OSError):
                    timestamp = None
        if timestamp is None:
            return quarantine(
                "bad_timestamp",
                path,
                offset,
                raw,
                DATASET,
                f"unreadable Time: {time_value[:80]}",
            )
        seq = _hex(f["sequence no"])
        reboot = _hex(f["reboot counter"])
        if seq is None or reboot is None:
            return quarantine(
                "bad_field_value",
                path,
                offset,
                raw,
                DATASET,
                "Sequence No / Reboot counter is not a number",
            )
        opcode_name, opcode_code = _name_and_code(f["opcode"])
        operation, flag = _opcode(opcode_name)
        response = f["response"]
        code, _, text = response.partition(":")
        code = code.strip()
        error_code: str | None = None
        error_message: str | None = None
        outcome: Outcome
        if code == "0":
            outcome = "success"
        elif code.isdigit():
            outcome = "failure"
            error_code = code
            error_message = text.split("HSM Error:", 1)[-1].strip() or None
        else:
            outcome = "unknown"
        log_type = _name_and_code(f.get("log type", ""))[0] or None

        identity = ctx.hsm or ctx.cluster or self.default_identity
        scope = ctx.cluster or ctx.hsm or self.default_identity
        handle_text = f.get("session handle")
        handle = _hex(handle_text)
        conn_key = (identity, reboot, handle >> 4) if handle is not None else None

        block_user = f.get("user name")
        block_type = f.get("user type")
        actor: tuple[str, str] | None = None
        target: tuple[str, str] | None = None
        if flag in ("login", "logout"):
            if block_user:
                actor = (block_user, block_type or "")
            elif conn_key is not None:
                actor = ctx.sessions.get(conn_key)
        else:
            if conn_key is not None:
                actor = ctx.sessions.get(conn_key)
            if block_user:
                target = (block_user, block_type or "")
        if conn_key is not None:
            if flag == "login" and outcome == "success" and actor is not None:
                ctx.sessions.open(conn_key, actor)
            elif flag in ("logout", "end"):
                ctx.sessions.close(conn_key)

        extra: dict[str, Any] = {
            "hsm.sequence_no": str(seq),
            "hsm.reboot_counter": reboot,
        }
        if opcode_code:
            extra["hsm.opcode"] = opcode_code
        if ctx.hsm:
            extra["hsm.serial"] = ctx.hsm
        if ctx.cluster:
            extra["hsm.cluster_id"] = ctx.cluster
        if handle_text:
            extra["hsm.session_handle"] = handle_text
        command_type = f.get("command type(hex)")
        if command_type:
            extra["hsm.command_type"] = _name_and_code(command_type)[0]
        if log_type:
            extra["hsm.log_type"] = log_type
        if target is not None:
            extra["hsm.target_user"] = target[0]
            if target[1]:
                extra["hsm.user_type"] = _name_and_code(target[1])[0]
        elif actor is not None and block_type and flag in ("login", "logout"):
            extra["hsm.user_type"] = _name_and_code(block_type)[0]
        if flag == "quorum":
            extra["hsm.quorum"] = True
        elif flag == "zeroize":
            extra["hsm.zeroize"] = True

        key_uid: str | None = None
        key_handle = f.get("priv/secret key handle") or f.get("key handle")
        if key_handle and key_handle != "0":
            key_uid = f"cloudhsm://{scope}/{key_handle}"
            extra["hsm.key_handle"] = key_handle
        public = f.get("public key handle")
        if public and public != "0":
            extra["hsm.public_key_handle"] = public
            if key_uid is None:
                key_uid = f"cloudhsm://{scope}/{public}"

        fields: dict[str, Any] = {}
        if actor is not None:
            fields["user_id"] = f"{scope}/{actor[0]}"
            fields["user_name"] = actor[0]
            if actor[1]:
                fields["principal_type"] = _principal_type(actor[1])
        if conn_key is not None:
            fields["session_id"] = f"{identity}:{reboot:#x}:{conn_key[2]:#x}"
        if key_uid is not None:
            fields["key_uid"] = key_uid
            fields["key_kind"] = "key"
        if self.parser.options.include_original:
            fields["original"] = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
        return new_event(
            timestamp=timestamp,
            event_id=stable_id(DATASET, identity, reboot, seq, usecs, opcode_name),
            dataset=DATASET,
            provider=PROVIDER,
            action=opcode_name,
            outcome=outcome,
            operation=operation,
            log_file_path=path,
            log_offset=offset,
            error_code=error_code,
            error_message=error_message,
            key_provider="cloudhsm",
            key_vault=scope,
            cloud_provider="aws",
            cloud_account_id=ctx.account,
            extra=extra,
            **fields,
        )


@per_record(DATASET)
def _certstore_outcome(
    parser: LogParser,
    record: Any,
    *,
    raw: bytes | None,
    path: str,
    offset: int,
    scope: str,
    account: str | None = None,
) -> ParseOutcome:
    """One certificate-storage audit record -> outcome."""
    if not isinstance(record, dict):
        return quarantine(
            "not_an_object", path, offset, raw or b"", DATASET, f"record is {type(record).__name__}"
        )
    raw_bytes = raw if raw is not None else orjson.dumps(record)
    op_code = record.get("op_code")
    ts = record.get("timestamp")
    if not isinstance(op_code, str) or "response" not in record:
        return quarantine(
            "missing_field",
            path,
            offset,
            raw_bytes,
            DATASET,
            "certificate-storage record needs op_code and response",
        )
    if isinstance(ts, bool) or not isinstance(ts, int | float):
        return quarantine(
            "bad_timestamp",
            path,
            offset,
            raw_bytes,
            DATASET,
            f"timestamp is not epoch milliseconds: {ts!r}"[:200],
        )
    try:
        timestamp = epoch_ms_iso(ts)
    except (ValueError, OverflowError, OSError):
        return quarantine(
            "bad_timestamp",
            path,
            offset,
            raw_bytes,
            DATASET,
            f"timestamp out of range: {ts!r}"[:200],
        )
    handle = record.get("object_handle")
    if isinstance(handle, float) and raw is not None:
        exact = loads_exact(raw)  # orjson turned an integer beyond 64 bits into a float
        handle = exact.get("object_handle") if isinstance(exact, dict) else handle
    if handle is not None and (isinstance(handle, bool) or not isinstance(handle, int | str)):
        return quarantine(
            "bad_field_value", path, offset, raw_bytes, DATASET, "object_handle is not an integer"
        )
    response = record.get("response")
    outcome: Outcome
    if response == "OK":
        outcome, error_code = "success", None
    elif isinstance(response, str) and response:
        outcome, error_code = "failure", response
    else:
        outcome, error_code = "unknown", None
    extra: dict[str, Any] = {}
    fields: dict[str, Any] = {}
    if handle is not None:
        fields["key_uid"] = f"cloudhsm://{scope}/{handle}"
        extra["hsm.key_handle"] = str(handle)
    attributes = record.get("attributes")
    if isinstance(attributes, list):
        names = [a for a in attributes if isinstance(a, str | int | float)]
        if names:
            extra["hsm.attributes"] = [str(a) for a in names]
    if scope != DEFAULT_IDENTITY:
        extra["hsm.cluster_id"] = scope
    if parser.options.include_original:
        fields["original"] = raw_bytes.decode("utf-8", "replace")
    return new_event(
        timestamp=timestamp,
        event_id=stable_id(DATASET, raw_bytes),
        dataset=DATASET,
        provider=PROVIDER,
        action=op_code,
        outcome=outcome,
        operation=CERTSTORE_OPS.get(op_code, "admin_other"),
        log_file_path=path,
        log_offset=offset,
        error_code=error_code,
        key_provider="cloudhsm",
        key_kind="certificate",
        key_vault=scope,
        cloud_provider="aws",
        cloud_account_id=account,
        extra=extra,
        **fields,
    )


def _all_lines(stream: IO[bytes], max_line: int) -> Iterator[tuple[int, bytes]]:
    """(offset, line) for every line INCLUDING blank ones (block framing needs them).

    `framing.iter_lines` drops blank lines, which are the block separators here. A line
    longer than `max_line` is yielded once as OVERLONG + its first 512 bytes.
    """
    buf = b""
    buf_start = 0
    skipping = False
    while True:
        chunk = stream.read(1 << 20)
        if not chunk:
            break
        buf += chunk
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            if skipping:
                skipping = False
            else:
                line = buf[start:nl]
                yield (
                    buf_start + start,
                    (OVERLONG + line[:512] if len(line) > max_line else line.rstrip(b"\r")),
                )
            start = nl + 1
        buf_start += start
        buf = buf[start:]
        if len(buf) > max_line and not skipping:
            yield buf_start, OVERLONG + buf[:512]
            skipping = True
        if skipping:
            buf_start += len(buf)
            buf = b""
    if buf and not skipping:
        yield buf_start, buf.rstrip(b"\r")


def _iter_blocks_slow(stream: IO[bytes], max_line: int) -> Iterator[tuple[int, list[bytes], bool]]:
    """Line-by-line block framing: blank (or whitespace-only) lines separate blocks, and a
    `Time` line also starts a new block when the current block already has one."""
    lines: list[bytes] = []
    start = 0
    overlong = False
    for offset, line in _all_lines(stream, max_line):
        if not line.strip():
            if lines:
                yield start, lines, overlong
                lines, overlong = [], False
            continue
        is_long = line.startswith(OVERLONG)
        starts_time = line.lstrip()[:4].lower() == b"time" and b":" in line[:24]
        has_time = bool(lines) and lines[0].lstrip()[:4].lower() == b"time"
        if lines and ((starts_time and has_time) or len(lines) >= MAX_BLOCK_LINES):
            yield start, lines, overlong
            lines, overlong = [], False
        if not lines:
            start = offset
        lines.append(line)
        overlong = overlong or is_long
    if lines:
        yield start, lines, overlong


def _split_block(
    data: bytes, offset: int, max_line: int
) -> Iterator[tuple[int, list[bytes], bool]]:
    """Frame one '\n\n'-delimited chunk; the common clean case without a per-line loop."""
    lead = len(data) - len(data.lstrip(b"\n"))
    if lead:
        data, offset = data[lead:], offset + lead
    data = data.rstrip(b"\n")
    if not data:
        return
    lines = data.split(b"\n")
    if (
        len(data) <= max_line
        and len(lines) <= MAX_BLOCK_LINES
        and b"\r" not in data
        and b"\n " not in data
        and b"\n\t" not in data
        and b"\nTime" not in data
        and not data[:1].isspace()
    ):
        yield offset, lines, False
        return
    yield from ((offset + o, ls, ov) for o, ls, ov in _iter_blocks_slow(io.BytesIO(data), max_line))


def _iter_blocks(stream: IO[bytes], max_line: int) -> Iterator[tuple[int, list[bytes], bool]]:
    """(offset of first line, lines, has an over-long line) per blank-line separated block.

    Fast path: split the stream on '\n\n'; chunks that are not plainly clean (CR, indented
    or whitespace-only lines, a second `Time` line, over-long) go through the line framer.
    A chunk with no blank line for more than 4 MiB is framed as it stands (bounded memory).
    """
    buf = b""
    base = 0
    limit = max(4 << 20, 2 * max_line)
    while True:
        chunk = stream.read(1 << 20)
        buf += chunk
        start = 0
        while True:
            end = buf.find(b"\n\n", start)
            if end < 0:
                break
            yield from _split_block(buf[start:end], base + start, max_line)
            start = end + 2
        if not chunk:
            if start < len(buf):
                yield from _split_block(buf[start:], base + start, max_line)
            return
        if len(buf) - start > limit:
            cut = buf.rfind(b"\n", start) + 1 or len(buf)
            yield from _split_block(buf[start:cut], base + start, max_line)
            start = cut
        base += start
        buf = buf[start:]


@register
class CloudHsmAuditTextParser(LogParser):
    """AWS CloudHSM classic audit events, text blocks separated by blank lines."""

    id = "hsm.cloudhsm.text"
    dataset = DATASET
    description = "AWS CloudHSM HSM audit log, classic multi-line text blocks"

    def sniff(self, head: bytes) -> int:
        try:
            body = head[first_significant_byte(head) :]
            if body[:4] == b"Time" and b"usecs:" in body[:200] and b"Opcode" in body:
                return 95
            if b"Opcode" in body and b"Reboot counter" in body and b"Sequence No" in body:
                return 80 if body[:1] not in (b"{", b"[") else 0
        except Exception:  # sniff must never raise
            return 0
        return 0

    def parse(self, stream: IO[bytes], path: str) -> Iterator[ParseOutcome]:
        return self._parse(stream, path, _Context(None, None))

    def parse_range(self, stream: IO[bytes], path: str, carry: list[Any], base: int,
                    final: bool) -> Iterator[ParseOutcome]:
        """One byte range of a growing file: `carry` holds the open sessions (who logged
        in on which connection) as [hsm, reboot counter, connection, user, user type]."""
        ctx = _Context(None, None)
        for hsm, reboot, conn, user, utype in carry:
            ctx.sessions.open((hsm, reboot, conn), (user, utype))
        yield from self._parse(stream, path, ctx)
        carry[:] = [] if final else [[*k, *v] for k, v in ctx.sessions.items()]

    def _parse(self, stream: IO[bytes], path: str, ctx: _Context) -> Iterator[ParseOutcome]:
        interpreter = _BlockInterpreter(self)
        tally = tally_of(stream)
        for offset, lines, overlong in _iter_blocks(stream, self.options.max_line_bytes):
            tally.records += 1
            raw = b"\n".join(lines)
            if overlong:
                yield quarantine(
                    "line_too_long",
                    path,
                    offset,
                    raw.replace(OVERLONG, b""),
                    DATASET,
                    "a line of the block exceeds max_line_bytes",
                )
                continue
            text = [ln.decode("utf-8", "replace") for ln in lines]
            yield interpreter.outcome(text, raw=raw, path=path, offset=offset, ctx=ctx)


def _cloudwatch_ids(
    event: dict[str, Any], container: dict[str, Any] | None
) -> tuple[str | None, str | None, str | None]:
    """(hsm id, cluster id, account) from a CloudWatch log event and its container."""
    c = container or {}
    stream = (
        event.get("logStreamName")
        or event.get("logStream")
        or c.get("logStream")
        or c.get("logStreamName")
    )
    group = (
        event.get("logGroupName")
        or event.get("logGroup")
        or c.get("logGroup")
        or c.get("logGroupName")
    )
    owner = event.get("owner") or c.get("owner")
    cluster = None
    if isinstance(group, str) and group:
        cluster = group.rstrip("/").rsplit("/", 1)[-1] or None
    hsm = stream if isinstance(stream, str) and stream else None
    return hsm, cluster, owner if isinstance(owner, str) and owner else None


@register
class CloudHsmCloudWatchParser(LogParser):
    """CloudHSM audit events wrapped in CloudWatch Logs JSON (export lines or API output)."""

    id = "hsm.cloudhsm.cloudwatch"
    dataset = DATASET
    description = "AWS CloudHSM audit logs as CloudWatch Logs JSON events"

    def sniff(self, head: bytes) -> int:
        try:
            body = head[first_significant_byte(head) :]
            if body[:1] not in (b"{", b"[") or b'"message"' not in body:
                return 0
            if b"/aws/cloudhsm" in body:
                return 95
            if (b"logStream" in body or b'"events"' in body or b'"logEvents"' in body) and (
                b"Reboot counter" in body or b"Opcode" in body or b"op_code" in body
            ):
                return 90
        except Exception:  # sniff must never raise
            return 0
        return 0

    def parse(self, stream: IO[bytes], path: str) -> Iterator[ParseOutcome]:
        interpreter = _BlockInterpreter(self)
        contexts: dict[tuple[str | None, str | None, str | None], _Context] = {}
        records = json_records(stream, self.options.max_line_bytes, ("events", "logEvents"))
        for offset, raw, event, error, container in records:
            if error is not None:
                reason, _, detail = error.partition(":")
                yield quarantine(reason, path, offset, raw or b"", DATASET, detail or None)
                continue
            if not isinstance(event, dict):
                yield quarantine(
                    "not_an_object",
                    path,
                    offset,
                    raw or orjson.dumps(event),
                    DATASET,
                    f"log event is {type(event).__name__}",
                )
                continue
            message = event.get("message")
            if not isinstance(message, str):
                yield quarantine(
                    "missing_field",
                    path,
                    offset,
                    raw or orjson.dumps(event),
                    DATASET,
                    "log event has no message",
                )
                continue
            ids = _cloudwatch_ids(event, container)
            ctx = contexts.get(ids)
            if ctx is None:
                if len(contexts) >= MAX_SESSIONS:
                    contexts.clear()
                ctx = contexts[ids] = _Context(*ids)
            ts = event.get("timestamp")
            fallback = ts if isinstance(ts, int) and not isinstance(ts, bool) else None
            body = message.lstrip()
            if body[:4] == "Time" or "Opcode" in body[:400]:
                lines = [ln for ln in body.splitlines() if ln.strip()]
                yield interpreter.outcome(
                    lines, raw=message, path=path, offset=offset, ctx=ctx, fallback_ms=fallback
                )
            elif body.startswith("{") and "op_code" in body:
                # certificate storage: the stream is named for the cluster
                scope = ids[1] or ids[0] or interpreter.default_identity
                msg_raw = body.rstrip().encode("utf-8", "surrogatepass")
                try:
                    record = loads_exact(msg_raw)
                except ValueError as exc:
                    yield quarantine(
                        "invalid_json",
                        path,
                        offset,
                        msg_raw,
                        DATASET,
                        f"certificate-storage message: {exc}",
                    )
                    continue
                yield _certstore_outcome(
                    self, record, raw=msg_raw, path=path, offset=offset, scope=scope, account=ids[2]
                )
            else:
                yield Skipped("not_audit_record", path, offset)


@register
class CloudHsmCertStoreParser(LogParser):
    """AWS CloudHSM PKCS#11 certificate-storage audit records, one JSON object per line."""

    id = "hsm.cloudhsm.certstore"
    dataset = DATASET
    description = "AWS CloudHSM PKCS#11 certificate-storage audit JSON"

    def sniff(self, head: bytes) -> int:
        try:
            body = head[first_significant_byte(head) :]
            if body[:1] in (b"{", b"[") and b'"op_code"' in body and b'"object_handle"' in body:
                return 90
        except Exception:  # sniff must never raise
            return 0
        return 0

    def parse(self, stream: IO[bytes], path: str) -> Iterator[ParseOutcome]:
        scope = str(getattr(self.options, "cloudhsm_cluster", DEFAULT_IDENTITY) or DEFAULT_IDENTITY)
        for offset, raw, record, error, _container in json_records(
            stream, self.options.max_line_bytes, ()
        ):
            if error is not None:
                reason, _, detail = error.partition(":")
                yield quarantine(reason, path, offset, raw or b"", DATASET, detail or None)
                continue
            yield _certstore_outcome(self, record, raw=raw, path=path, offset=offset, scope=scope)


__all__ = [
    "CloudHsmAuditTextParser",
    "CloudHsmCertStoreParser",
    "CloudHsmCloudWatchParser",
    "KeyEvent",
]
