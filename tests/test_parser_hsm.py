"""HSM parsers (AWS CloudHSM, Thales Luna, Entrust nShield): behaviour a user would notice."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parsers.base import REGISTRY, ParseError, ParseOptions, Quarantined, Skipped
from parsers.detect import detect, parse_bytes
from parsers.hsm_cloudhsm import (
    CloudHsmAuditTextParser,
    CloudHsmCertStoreParser,
    CloudHsmCloudWatchParser,
)
from parsers.hsm_common import EXTRA_FIELDS as HSM_EXTRA_FIELDS
from parsers.hsm_common import parse_syslog
from parsers.hsm_luna import LunaCloudAuditParser, LunaSyslogParser
from parsers.hsm_nshield import NShieldAuditJsonParser, NShieldCefParser
from parsers.schema import EXTRA_FIELDS, OPERATIONS, KeyEvent
from tests.golden_util import REAL_LOGS, SAMPLES

HSM_PARSER_IDS = sorted(k for k in REGISTRY.classes if k.startswith("hsm."))


def run(parser_cls: type, data: bytes, options: ParseOptions | None = None) -> list[Any]:
    return list(parser_cls(options).parse(io.BytesIO(data), "t.log"))


def events(outcomes: list[Any]) -> list[KeyEvent]:
    return [o for o in outcomes if isinstance(o, KeyEvent)]


def block(
    opcode: str,
    handle: str,
    *,
    seq: str = "0x1",
    reboot: str = "0x107",
    response: str = "0:HSM Return: SUCCESS",
    user: str | None = None,
    utype: str = "CN_CRYPTO_OFFICER (2)",
    key: str | None = None,
    sep: str = " : ",
    usecs: int = 1516067329824999,
) -> str:
    lines = [
        f"Time: 01/16/18 01:48:49.824999, usecs:{usecs}",
        f"Sequence No{sep}{seq}",
        f"Reboot counter{sep}{reboot}",
        f"Command Type(hex){sep}CN_MGMT_CMD (0x0)",
        f"Opcode{sep}{opcode}",
        f"Session Handle{sep}{handle}",
        f"Response{sep}{response}",
    ]
    if user is not None:
        lines += [
            f"Log type{sep}MGMT_USER_DETAILS_LOG (2)",
            f"User Name{sep}{user}",
            f"User Type{sep}{utype}",
        ]
    elif key is not None:
        lines += [
            f"Log type{sep}MGMT_KEY_DETAILS_LOG (1)",
            f"Priv/Secret Key Handle{sep}{key}",
            f"Public Key Handle{sep}0",
        ]
    else:
        lines += [f"Log type{sep}MINIMAL_LOG_ENTRY (0)"]
    return "\n".join(lines)


def blocks(*items: str) -> bytes:
    return ("\n\n".join(items) + "\n").encode()


# ---------------------------------------------------------------- CloudHSM classic blocks


def test_session_connection_masking_attributes_key_ops_to_the_login() -> None:
    data = blocks(
        block("CN_LOGIN (0xd)", "0x7014006", seq="0x0", user="admin"),
        block("CN_CREATE_CO (0x4)", "0x7014007", seq="0x1", user="alice"),
        block("CN_GENERATE_KEY (0x17)", "0x7014003", seq="0x2", key="262152"),
        block("CN_LOGOUT (0xe)", "0x7014000", seq="0x3", user="admin"),
        block("CN_DESTROY_OBJECT (0x11)", "0x7014004", seq="0x4", key="262152"),
    )
    login, create_co, gen, logout, destroy = events(run(CloudHsmAuditTextParser, data))
    assert login.operation == "login" and login.user_name == "admin"
    assert login.principal_type == "crypto_officer"
    # CN_CREATE_CO names the TARGET user; the actor is the CO of the same connection
    assert create_co.user_name == "admin" and create_co.user_id == "default/admin"
    assert create_co.extra["hsm.target_user"] == "alice"
    assert create_co.extra["hsm.user_type"] == "CN_CRYPTO_OFFICER"
    assert gen.user_name == "admin" and gen.key_uid == "cloudhsm://default/262152"
    assert gen.operation == "create" and gen.session_id == login.session_id
    assert logout.user_name == "admin"
    assert destroy.user_name is None  # the connection logged out
    assert destroy.operation == "destroy"


def test_failed_login_opens_no_session_and_carries_the_error() -> None:
    data = blocks(
        block(
            "CN_LOGIN (0xd)",
            "0xc008002",
            response="163:HSM Error: RET_USER_LOGIN_FAILURE",
            user="testuser",
            utype="CN_CRYPTO_USER (1)",
        ),
        block("CN_GENERATE_KEY (0x17)", "0xc008004", seq="0x2", key="7"),
    )
    failed, gen = events(run(CloudHsmAuditTextParser, data))
    assert failed.outcome == "failure" and failed.operation == "login"
    assert failed.error_code == "163" and failed.error_message == "RET_USER_LOGIN_FAILURE"
    assert failed.user_name == "testuser" and failed.principal_type == "crypto_user"
    assert gen.user_name is None


def test_separator_variants_parse_the_same() -> None:
    outs = [
        events(
            run(
                CloudHsmAuditTextParser,
                blocks(block("CN_SHARE_OBJECT (0x12)", "0x3014007", key="11", sep=sep)),
            )
        )
        for sep in (" : ", ": ", "\t: ")
    ]
    flat = [o[0].to_flat() for o in outs]
    for f in flat:
        f.pop("log.offset")
    assert flat[0] == flat[1] == flat[2]
    assert outs[0][0].operation == "grant"


def test_reboot_counter_sequence_and_unknown_opcode() -> None:
    (ev,) = events(
        run(
            CloudHsmAuditTextParser,
            blocks(block("CN_SOMETHING_NEW (0x1ff)", "0x1004001", seq="0x1d", reboot="0xe8")),
        )
    )
    assert ev.operation == "admin_other" and ev.action == "CN_SOMETHING_NEW"
    assert ev.extra["hsm.reboot_counter"] == 0xE8
    assert ev.extra["hsm.sequence_no"] == "29" and ev.extra["hsm.opcode"] == "0x1ff"
    assert ev.timestamp == "2018-01-16T01:48:49.824Z"


def test_quorum_and_zeroize_flags() -> None:
    m_value, init = events(
        run(
            CloudHsmAuditTextParser,
            blocks(
                block("CN_SET_M_VALUE (0x4c)", "0x1004001", user="admin"),
                block("CN_INIT_TOKEN (0x1)", "0x1004001", seq="0x2"),
            ),
        )
    )
    assert m_value.extra["hsm.quorum"] is True and m_value.operation == "admin_other"
    assert init.extra["hsm.zeroize"] is True


def test_event_ids_dedup_verbatim_repeats_but_separate_distinct_blocks() -> None:
    same = block("CN_LOGIN (0xd)", "0x7014006", seq="0x0", user="admin")
    # the user guide has two different events sharing (reboot, seq, usecs) on two HSMs
    other = block("CN_LOGOUT (0xe)", "0x7014000", seq="0x0", user="admin")
    a, b, c = events(run(CloudHsmAuditTextParser, blocks(same, same, other)))
    assert a.event_id == b.event_id != c.event_id
    assert a.log_offset == 0 and b.log_offset > 0


def test_classic_block_quarantine_reasons() -> None:
    truncated = "\n".join(block("CN_GENERATE_KEY (0x17)", "0x1", key="5").splitlines()[:5])
    data = blocks(
        truncated,
        "### garbage ###",
        block("CN_LOGIN (0xd)", "0x1", user="a")
        .replace("usecs:1516067329824999", "usecs:x")
        .replace("01/16/18", "99/99/18"),
        block("CN_LOGIN (0xd)", "0x1", seq="0xZZ", user="a"),
    )
    reasons = [o.reason for o in run(CloudHsmAuditTextParser, data)]
    assert reasons == ["truncated_record", "unknown_shape", "bad_timestamp", "bad_field_value"]


def test_include_original_is_opt_in() -> None:
    data = blocks(block("CN_LOGIN (0xd)", "0x1", user="a"))
    assert events(run(CloudHsmAuditTextParser, data))[0].original is None
    ev = events(run(CloudHsmAuditTextParser, data, ParseOptions(include_original=True)))[0]
    assert ev.original is not None and ev.original.startswith("Time:")


# ---------------------------------------------------------------- CloudWatch wrapping


def test_cloudwatch_export_lines_carry_cluster_and_hsm_identity() -> None:
    group = "/aws/cloudhsm/cluster-xyz"
    lines = [
        {
            "timestamp": 1,
            "message": block("CN_LOGIN (0xd)", "0x2014005", user="cu1", utype="CN_CRYPTO_USER (1)"),
            "logStreamName": "hsm-abc",
            "logGroupName": group,
        },
        {
            "timestamp": 2,
            "message": block("CN_GENERATE_KEY (0x17)", "0x2014004", seq="0x2", key="131079"),
            "logStreamName": "hsm-abc",
            "logGroupName": group,
        },
        # same connection handle on ANOTHER HSM: no session there
        {
            "timestamp": 3,
            "message": block("CN_WRAP_KEY (0x1a)", "0x2014004", seq="0x3", key="131079"),
            "logStreamName": "hsm-def",
            "logGroupName": group,
        },
        {
            "timestamp": 4,
            "message": "log stream rotated",
            "logStreamName": "hsm-abc",
            "logGroupName": group,
        },
    ]
    data = b"".join(orjson.dumps(x) + b"\n" for x in lines)
    outs = run(CloudHsmCloudWatchParser, data)
    login, gen, wrap, skipped = outs
    assert login.operation == "login" and login.user_name == "cu1"
    assert gen.key_uid == wrap.key_uid == "cloudhsm://cluster-xyz/131079"
    assert gen.extra["hsm.serial"] == "hsm-abc" and gen.extra["hsm.cluster_id"] == "cluster-xyz"
    assert gen.user_id == "cluster-xyz/cu1"
    assert wrap.user_id is None and wrap.operation == "wrap"
    assert isinstance(skipped, Skipped) and skipped.reason == "not_audit_record"
    assert [o.log_offset for o in outs[:2]] == [0, len(orjson.dumps(lines[0])) + 1]


def test_cloudwatch_filter_log_events_document_and_subscription_payload() -> None:
    doc = {
        "events": [
            {
                "logStreamName": "hsm-abc",
                "timestamp": 1,
                "eventId": "1",
                "message": block("CN_LOGIN (0xd)", "0x2014005", user="a"),
            },
            {
                "logStreamName": "hsm-abc",
                "timestamp": 2,
                "eventId": "2",
                "message": block("CN_LOGOUT (0xe)", "0x2014000", seq="0x2", user="a"),
            },
        ],
        "searchedLogStreams": [],
    }
    outs = run(CloudHsmCloudWatchParser, json.dumps(doc, indent=2).encode())
    assert [o.log_offset for o in outs] == [0, 1]  # record index inside the document
    assert outs[0].key_vault == "hsm-abc"  # no log group: the HSM id scopes the keys
    sub = {
        "messageType": "DATA_MESSAGE",
        "owner": "111122223333",
        "logGroup": "/aws/cloudhsm/cluster-q",
        "logStream": "hsm-q1",
        "logEvents": [
            {
                "id": "9",
                "timestamp": 5,
                "message": block("CN_DESTROY_OBJECT (0x11)", "0x5", key="42"),
            }
        ],
    }
    (ev,) = run(CloudHsmCloudWatchParser, orjson.dumps(sub))
    assert ev.key_uid == "cloudhsm://cluster-q/42" and ev.cloud_account_id == "111122223333"


def test_cloudwatch_certificate_storage_message() -> None:
    msg = (
        '{"object_handle":463180677312929947,"op_code":"DestroyObject","response":"OK",'
        '"attributes":null,"timestamp":1725482484559}'
    )
    line = orjson.dumps(
        {
            "timestamp": 1725482484600,
            "message": msg,
            "logStreamName": "cluster-xyz",
            "logGroupName": "/aws/cloudhsm/cluster-xyz",
        }
    )
    (ev,) = run(CloudHsmCloudWatchParser, line + b"\n")
    assert ev.key_uid == "cloudhsm://cluster-xyz/463180677312929947"
    assert ev.key_kind == "certificate" and ev.operation == "destroy"


# ---------------------------------------------------------------- certificate storage


def test_certstore_handles_stay_exact_beyond_2_53_and_2_64() -> None:
    big = 2**64 + 12345  # orjson would turn this into a float
    data = (
        b'{"object_handle":463180677312929947,"op_code":"CreateObject","response":"OK",'
        b'"attributes":null,"timestamp":1725482483671}\n'
        + f'{{"object_handle":{big},"op_code":"SetAttributeValues","response":"OK",'
        f'"attributes":["Label"],"timestamp":1725482488004}}\n'.encode()
        + b'{"object_handle":null,"op_code":"CreateObject","response":"MaxObjectsReached",'
        b'"attributes":null,"timestamp":1726084937125}\n'
    )
    created, attrs, failed = run(CloudHsmCertStoreParser, data)
    assert created.key_uid == "cloudhsm://default/463180677312929947"
    assert created.timestamp == "2024-09-04T20:41:23.671Z" and created.operation == "create"
    assert attrs.key_uid == f"cloudhsm://default/{big}"
    assert attrs.extra["hsm.attributes"] == ["Label"] and attrs.operation == "update_policy"
    assert failed.outcome == "failure" and failed.error_code == "MaxObjectsReached"
    assert failed.key_uid is None


def test_certstore_bad_records_are_quarantined() -> None:
    data = (
        b'{"object_handle":1,"op_code":"CreateObject","response":"OK","timestamp":"x"}\n'
        b'{"object_handle":1}\n'
        b"[1,2]\n"
        b'{"object_handle":1,"op_code":"CreateObject",\n'
    )
    reasons = [o.reason for o in run(CloudHsmCertStoreParser, data)]
    assert reasons == ["bad_timestamp", "missing_field", "not_an_object", "invalid_json"]


# ---------------------------------------------------------------- Luna syslog

LUNASH = (
    "2012 Feb 29 12:05:01 myLuna  local5 info  lunash [1234]: info : 0 : Command: my file "
    "list  : monitor : 192.168.0.100/40847\n"
    "2012 Feb 29 12:05:01 myLuna  local5 info  lunash [1234]: info : 0 : Lush user login : "
    "admin : Console\n"
    "2012 Feb 29 12:05:02 myLuna  local5 info  lunash [1234]: info : 3 : Command: partition "
    "create -partition p1 -password s3cret  : admin : Console\n"
    "2012 Feb 29 12:05:01 myLuna  local5 warn  lunash [1234]: HSM Admin Login: incorrect "
    "password or PED key\n"
)


def test_lunash_command_lines() -> None:
    listing, login, create, bad = run(LunaSyslogParser, LUNASH.encode())
    assert listing.action == "my file list" and listing.operation == "list"
    assert listing.user_name == "monitor" and listing.principal_type == "appliance_monitor"
    assert listing.source_ip == "192.168.0.100"
    assert listing.source_address == "192.168.0.100/40847"
    assert login.operation == "login" and login.outcome == "success"
    assert login.source_ip is None and login.source_address == "Console"
    assert create.outcome == "failure" and create.error_code == "3"
    assert create.extra["hsm.partition"] == "p1"
    assert "s3cret" not in create.extra["hsm.command"]  # secrets never reach the event
    assert bad.operation == "login" and bad.outcome == "failure"
    assert bad.error_message == "incorrect password or PED key"


def test_luna_alarm_and_audit_record_forms() -> None:
    text = (
        "2017 Apr 17 11:00:45 local_host kern info kernel: k7pf0: [HSM] ALM2006: HSM "
        "decommissioned by FW\n"
        "2025 Jan 20 10:03:05 luna-a1  local3 info  luna_audit [2211]: X^104,01/20/25 "
        "10:03:05,S/N 583729 session 4 Access 2147483651:14002 operation LUNA_GENERATE_KEY "
        "returned RC_OK(0x00000000) partition=158820 role=0 handle=112 label=kek^\n"
        "105,01/20/25 10:03:09,S/N 583729 session 4 Access 2147483651:14002 operation "
        "LUNA_LOGIN returned RC_PIN_INCORRECT(0x000000a0) partition=158820 role=5\n"
        "106,01/20/25 10:03:10,S/N 583729 session 4 Access 2147483651:14002 operation "
        "LUNA_CLOSE_SESSION returned RC_OK(0x00000000)\n"
    )
    alarm, gen, login, closed = run(LunaSyslogParser, text.encode())
    assert alarm.extra["hsm.alarm"] is True and alarm.extra["hsm.alarm_code"] == "ALM2006"
    assert alarm.outcome == "unknown" and alarm.extra["hsm.zeroize"] is True
    assert gen.key_uid == "luna://583729/158820/112" and gen.key_name == "kek"
    assert gen.operation == "create" and gen.principal_type == "crypto_officer"
    assert gen.timestamp == "2025-01-20T10:03:05.000Z"
    assert login.outcome == "failure" and login.error_code == "RC_PIN_INCORRECT"
    assert login.principal_type == "crypto_user"
    assert isinstance(closed, Skipped) and closed.reason == "session_event"


def test_luna_line_accounting_for_doc_pages() -> None:
    text = (
        "Some prose about logging.\n"
        "2017 Apr 17 11:00:48 local_host kern info kernel: k7pf0: [HSM] ALM2014: Auto\n"
        "2017 Apr 17 11:01:12\n"
        "Apr 17 11:01:13 host lunash[1]: info : 0 : Command: hsm show : admin : Console\n"
        "2017 Apr 17 11:01:14 local_host authpriv info sshd [9]: Accepted password\n"
    )
    outs = run(LunaSyslogParser, text.encode())
    kinds = [type(o).__name__ + ":" + getattr(o, "reason", "") for o in outs]
    assert kinds == [
        "Skipped:not_a_log_line",
        "KeyEvent:",
        "Quarantined:truncated_record",
        "Quarantined:bad_timestamp",
        "Skipped:not_hsm_event",
    ]


def test_syslog_header_forms() -> None:
    rfc5424 = parse_syslog("<173>1 2026-02-11T09:30:12.5Z luna-a1 lunash 6011 - - hello")
    assert rfc5424 is not None and rfc5424.timestamp == "2026-02-11T09:30:12.500Z"
    assert rfc5424.program == "lunash" and rfc5424.message == "hello"
    appliance = parse_syslog("2012 Feb 29 12:05:01 myLuna  local5 info  lunash [1234]: x : y")
    assert appliance is not None and appliance.facility == "local5"
    assert appliance.message == "x : y" and appliance.timestamp == "2012-02-29T12:05:01.000Z"
    assert parse_syslog("just words here and more") is None


# ---------------------------------------------------------------- Luna Cloud HSM (DPoD)


def test_dpod_array_and_ndjson() -> None:
    rec = {
        "time": "2022-03-10 15:29:01 UTC",
        "source": "thales/cloudhsm/1269045733704",
        "resourceID": "svc-1",
        "actorID": "client-1",
        "tenantID": "t-1",
        "action": "LUNA_UNWRAP_KEY",
        "status": "success",
        "meta": {"ouid": "1a00", "role": "Crypto User", "clientIp": "198.51.100.1"},
    }
    (ev,) = run(LunaCloudAuditParser, json.dumps([rec], indent=2).encode())
    assert ev.log_offset == 0 and ev.key_uid == "luna://dpod/1269045733704/1a00"
    assert ev.operation == "unwrap" and ev.principal_type == "crypto_user"
    assert ev.user_id == "client-1" and ev.source_ip == "198.51.100.1"
    assert ev.extra["hsm.tenant_id"] == "t-1" and ev.timestamp == "2022-03-10T15:29:01.000Z"
    rec2 = dict(rec, meta=json.dumps(rec["meta"]), status="CKR_KEY_HANDLE_INVALID")
    (ev2,) = run(LunaCloudAuditParser, orjson.dumps(rec2) + b"\n")
    assert ev2.outcome == "failure" and ev2.error_code == "CKR_KEY_HANDLE_INVALID"
    assert ev2.key_uid == ev.key_uid  # meta given as a JSON string


# ---------------------------------------------------------------- nShield


def test_nshield_cef_escapes_labels_and_failures() -> None:
    line = (
        "<134>Mar 10 09:14:02 rfs hardserver: CEF:0|nCipher|nShield|12.80|GenerateKey|"
        "Key gen \\| AES|3|rt=1741598042118 deviceExternalId=5A2B-02E0-D947 "
        "src=198.51.100.31 suser=svc outcome=success cs1Label=appname cs1=simple "
        "cs2Label=ident cs2=my key cn1Label=seqno cn1=7 msg=a\\=b\n"
        "Mar 10 09:14:05 rfs hardserver: CEF:0|nCipher|nShield|12.80|ReadShare|x|7|"
        "rt=Mar 10 2025 09:14:05 deviceExternalId=5A2B-02E0-D947 outcome=failure "
        "reason=AccessDenied cs3Label=cardset cs3=admin-acs\n"
    )
    gen, share = run(NShieldCefParser, line.encode())
    assert gen.key_uid == "nshield://5A2B-02E0-D947/simple/my key"
    assert gen.operation == "create" and gen.user_id == "svc"
    assert gen.source_ip == "198.51.100.31" and gen.extra["hsm.sequence_no"] == "7"
    assert share.operation == "login" and share.outcome == "failure"
    assert share.error_code == "AccessDenied" and share.user_id == "cardset:admin-acs"
    assert share.timestamp == "2025-03-10T09:14:05.000Z"


def test_nshield_ncore_json() -> None:
    recs = [
        {
            "seqno": 1,
            "time": "2026-01-12T10:00:00Z",
            "esn": "E1",
            "command": "Export",
            "status": "OK",
            "key": {"appname": "pkcs11", "ident": "k1"},
        },
        {
            "seqno": 2,
            "time": "2026-01-12T10:00:01Z",
            "esn": "E1",
            "command": "InitialiseUnit",
            "status": "OK",
        },
        {
            "seqno": 3,
            "time": "2026-01-12T10:00:02Z",
            "esn": "E1",
            "command": "Decrypt",
            "status": "AccessDenied",
            "key": {"hash": "abcd"},
        },
    ]
    exp, init, dec = run(NShieldAuditJsonParser, b"\n".join(orjson.dumps(r) for r in recs))
    assert exp.operation == "export" and exp.key_uid == "nshield://E1/pkcs11/k1"
    assert init.extra["hsm.zeroize"] is True
    assert dec.outcome == "failure" and dec.key_uid == "nshield://E1/hash/abcd"


# ---------------------------------------------------------------- schema conformance


def test_every_sample_event_uses_the_vocabulary_and_known_extras() -> None:
    files = sorted((SAMPLES / "hsm").glob("*"))
    assert files, "sample_logs/hsm is empty"
    known = set(EXTRA_FIELDS) | set(HSM_EXTRA_FIELDS)
    for f in files:
        if f.name == "README.md":
            continue
        _, outs = parse_bytes(f.read_bytes(), f.name)
        for o in events(outs):
            assert o.operation in OPERATIONS, (f, o.operation)
            assert o.dataset in ("hsm.cloudhsm", "hsm.luna", "hsm.nshield")
            assert set(o.extra) <= known, (f, set(o.extra) - known)
            for v in o.extra.values():
                assert isinstance(v, str | int | bool | list), (f, v)
            assert o.timestamp.endswith("Z") and len(o.timestamp) == 24


# ---------------------------------------------------------------- format detection

SAMPLE_PARSER = {
    "cloudhsm-hsm-audit.log": "hsm.cloudhsm.text",
    "cloudhsm-malformed.log": "hsm.cloudhsm.text",
    "cloudhsm-cloudwatch-export.ndjson": "hsm.cloudhsm.cloudwatch",
    "cloudhsm-subscription-payload.json": "hsm.cloudhsm.cloudwatch",
    "cloudhsm-certificate-storage.ndjson": "hsm.cloudhsm.certstore",
    "luna-appliance-syslog.log": "hsm.luna.syslog",
    "luna-malformed.log": "hsm.luna.syslog",
    "luna-cloud-hsm-audit.json": "hsm.luna.dpod",
    "luna-cloud-hsm-malformed.ndjson": "hsm.luna.dpod",
    "nshield-cef-audit.log": "hsm.nshield.cef",
    "nshield-malformed.log": "hsm.nshield.cef",
    "nshield-ncore-audit.ndjson": "hsm.nshield.ncore",
}


@pytest.mark.parametrize("name", sorted(SAMPLE_PARSER))
def test_detection_picks_the_right_hsm_parser(name: str) -> None:
    parser = detect((SAMPLES / "hsm" / name).read_bytes()[:65536])
    assert parser is not None and parser.id == SAMPLE_PARSER[name]


def test_samples_cover_every_hsm_parser() -> None:
    assert set(SAMPLE_PARSER.values()) == set(HSM_PARSER_IDS)
    on_disk = {p.name for p in (SAMPLES / "hsm").iterdir() if p.name != "README.md"}
    assert on_disk == set(SAMPLE_PARSER)


def test_hsm_sniffers_do_not_claim_other_families() -> None:
    others = [
        p
        for p in SAMPLES.rglob("*")
        if p.is_file() and p.parent.name != "hsm" and p.name != "README.md"
    ]
    if REAL_LOGS.exists():
        others += [
            p
            for p in REAL_LOGS.rglob("*")
            if p.is_file()
            and p.parent.name != "hsm"
            and p.suffix != ".gz"
            and p.name not in ("README.md", "PROVENANCE.tsv")
        ]
    if not others:
        pytest.skip("no sample or real log files of other families yet")
    parsers = [REGISTRY.get(pid) for pid in HSM_PARSER_IDS]
    for path in others:
        head = path.read_bytes()[:65536]
        scores = {p.id: p.sniff(head) for p in parsers}
        assert not any(scores.values()), (path, scores)


# ---------------------------------------------------------------- real logs

REAL_EXPECTED: dict[str, tuple[str | None, int, dict[str, int], dict[str, int]]] = {
    # file: (dataset, events, skipped by reason, quarantined by reason)
    "aws-cloudhsm-user-guide.cloudhsm.log": ("hsm.cloudhsm", 32, {}, {}),
    "aws-cloudhsm-certificate-storage.ndjson": ("hsm.cloudhsm", 4, {}, {}),
    "luna-7-lunash-command-logging.txt": ("hsm.luna", 8, {"not_a_log_line": 16}, {}),
    "luna-7.1-logging-about-hsm-alarm-lines.txt": (
        "hsm.luna",
        2,
        {"not_a_log_line": 19},
        {"truncated_record": 1},
    ),
    "malformed-from-docs.ndjson": ("hsm.luna", 0, {}, {"invalid_json": 1}),
    # doc pages without a record, and the prose page around the cut-off DPoD example
    "dpod-gemalto-blog-audit-example-partial.txt": (None, 0, {}, {"unrecognized_format": 1}),
    "dpod-luna-cloud-hsm-service-audit-logs.txt": (None, 0, {}, {"unrecognized_format": 1}),
    "luna-6.3-appliance-side-audit-logging.txt": (None, 0, {}, {"unrecognized_format": 1}),
    "luna-7-audit-log-categories-and-hsm-events.txt": (None, 0, {}, {"unrecognized_format": 1}),
    "luna-7.3-remote-audit-logging.txt": (None, 0, {}, {"unrecognized_format": 1}),
    "nshield-audit-logging-format-change-appnote.txt": (None, 0, {}, {"unrecognized_format": 1}),
}


def _real_hsm_dir() -> Path:
    path = REAL_LOGS / "hsm"
    if not path.exists():
        pytest.skip(f"../shared/real_logs not present: {path}")
    return path


def test_real_logs_every_hsm_file_is_accounted_with_exact_counts() -> None:
    real = _real_hsm_dir()
    files = sorted(p.name for p in real.iterdir() if p.is_file())
    assert set(files) == set(REAL_EXPECTED), set(files) ^ set(REAL_EXPECTED)
    for name in files:
        dataset, outs = parse_bytes((real / name).read_bytes(), f"real/{name}")
        n_events = len(events(outs))
        skipped = Counter(o.reason for o in outs if isinstance(o, Skipped))
        quarantined = Counter(o.reason for o in outs if isinstance(o, Quarantined))
        assert len(outs) == n_events + sum(skipped.values()) + sum(quarantined.values())
        assert (dataset, n_events, dict(skipped), dict(quarantined)) == REAL_EXPECTED[name], name


def test_real_cloudhsm_user_guide_quirks() -> None:
    real = _real_hsm_dir()
    _, outs = parse_bytes((real / "aws-cloudhsm-user-guide.cloudhsm.log").read_bytes())
    evs = events(outs)
    by_action = Counter(e.action for e in evs)
    assert by_action["CN_LOGIN"] == 8 and by_action["CN_EXTRACT_MASKED_OBJECT_USER"] == 2
    ids = Counter(e.event_id for e in evs)
    assert sorted(ids.values(), reverse=True)[:3] == [2, 2, 1]  # 2 blocks appear twice
    create_co = next(e for e in evs if e.action == "CN_CREATE_CO")
    assert create_co.user_name == "admin" and create_co.extra["hsm.target_user"] == "alice"
    share = next(e for e in evs if e.action == "CN_SHARE_OBJECT")  # TAB separators
    assert share.extra["hsm.reboot_counter"] == 0x38 and share.operation == "grant"
    failed = [e for e in evs if e.action == "CN_LOGIN" and e.outcome == "failure"]
    assert {e.error_code for e in failed} == {"157", "163"}


def test_real_malformed_from_docs_dpod_blob_is_quarantined() -> None:
    real = _real_hsm_dir()
    _, outs = parse_bytes((real / "malformed-from-docs.ndjson").read_bytes())
    (q,) = outs
    assert isinstance(q, Quarantined) and q.reason == "invalid_json"
    assert q.detail is not None and "typographic" in q.detail


# ---------------------------------------------------------------- properties

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=20,
)
_SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _consume(parser_id: str, data: bytes) -> list[Any]:
    parser = REGISTRY.get(parser_id)
    parser.sniff(data)
    try:
        return list(parser.parse(io.BytesIO(data), "fuzz"))
    except ParseError:
        return []


@_SETTINGS
@given(data=st.binary(max_size=2048))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    for pid in HSM_PARSER_IDS:
        _consume(pid, data)


@_SETTINGS
@given(
    data=st.lists(
        st.text(max_size=120).filter(lambda s: "\n" not in s and "\r" not in s), max_size=8
    )
)
def test_line_parsers_yield_one_outcome_per_nonblank_line(data: list[str]) -> None:
    raw = "\n".join(data).encode()
    expected = sum(1 for line in raw.split(b"\n") if line.strip())
    for parser_cls in (LunaSyslogParser, NShieldCefParser):
        assert len(run(parser_cls, raw)) == expected


@_SETTINGS
@given(value=_JSON)
def test_arbitrary_json_never_raises(value: Any) -> None:
    line = json.dumps(value).encode()  # stdlib: integers beyond 64 bits too
    for data in (line + b"\n" + line + b"\n", json.dumps(value, indent=2).encode()):
        for pid in HSM_PARSER_IDS:
            _consume(pid, data)


@_SETTINGS
@given(
    values=st.lists(
        st.dictionaries(
            # a line holding a container ({"records": [...]}) is one record per element, by design
            st.text(max_size=8).filter(
                lambda k: k not in ("events", "records", "logs", "logEvents")
            ),
            _JSON,
            max_size=5,
        ),
        max_size=5,
    )
)
def test_json_parsers_one_outcome_per_object_line(values: list[dict[str, Any]]) -> None:
    data = b"".join(json.dumps(v).encode() + b"\n" for v in values)
    for parser_cls in (CloudHsmCertStoreParser, LunaCloudAuditParser, NShieldAuditJsonParser):
        assert len(run(parser_cls, data)) == len(values)


@_SETTINGS
@given(
    fields=st.dictionaries(
        st.sampled_from(
            [
                "Time",
                "Sequence No",
                "Reboot counter",
                "Opcode",
                "Session Handle",
                "Response",
                "Log type",
                "User Name",
                "User Type",
                "Priv/Secret Key Handle",
            ]
        ),
        st.text(max_size=30).filter(lambda s: "\n" not in s and "\r" not in s),
        max_size=10,
    )
)
def test_cloudhsm_blocks_one_outcome_per_block(fields: dict[str, str]) -> None:
    one = "\n".join(f"{k} : {v}" for k, v in fields.items())
    if not one.strip():
        return
    outs = run(CloudHsmAuditTextParser, (one + "\n\n" + one + "\n").encode())
    assert len(outs) >= 2  # a Time line inside a value can only split, never merge


def test_block_framing_crlf_missing_blank_lines_and_chunk_boundaries() -> None:
    one = block("CN_LOGIN (0xd)", "0x1", user="a")
    two = block("CN_LOGOUT (0xe)", "0x1", seq="0x2", user="a")
    crlf = (one + "\n\n" + two + "\n").replace("\n", "\r\n").encode()
    assert [e.action for e in events(run(CloudHsmAuditTextParser, crlf))] == [
        "CN_LOGIN",
        "CN_LOGOUT",
    ]
    glued = (one + "\n" + two + "\n \n\n\n" + one + "\n").encode()  # no blank line, then a
    outs = run(CloudHsmAuditTextParser, glued)  # whitespace-only separator line
    assert [o.action for o in events(outs)] == ["CN_LOGIN", "CN_LOGOUT", "CN_LOGIN"]
    assert [glued[o.log_offset : o.log_offset + 5] for o in outs] == [b"Time:"] * 3
    unit = blocks(one, two)
    big = unit * (3_000_000 // len(unit) + 1)  # crosses the 1 MiB read boundaries
    outs = run(CloudHsmAuditTextParser, big)
    assert len(events(outs)) == len(outs) == 2 * (3_000_000 // len(unit) + 1)
    assert all(big[o.log_offset : o.log_offset + 5] == b"Time:" for o in outs)
