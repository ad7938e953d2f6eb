"""One hostile corpus for every output test: log content an attacker can write.

`write_corpus(dir)` copies a few sample logs with a principal, a Vault transit key and an
HSM user renamed to hostile strings (terminal escapes, bidi override, HTML/script, XML
control characters, spreadsheet formulas), and adds records carrying secrets (a raw Vault
token and accessor in token-in-URL paths, a SAS signature in a Key Vault requestUri, a
password in a URL, an Authorization header, encryption-context values), some well formed
and some broken so they reach the quarantine. Tests then assert, per output medium, that
none of HOSTILE_RAW reaches a terminal unneutralised and none of SECRETS is stored.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

REPO: Final = Path(__file__).resolve().parents[1]
SAMPLES: Final = REPO / "sample_logs"

# Characters that act on a terminal: OSC retitle ... BEL, CSI clear screen, RLO, C1 CSI.
TERMINAL_ATTACK: Final = "\x1b]0;pwned\x07\x1b[2J\u202e\x9b31m"
# if any of it ever runs in the report it sets window.__pwned (tests/test_report_browser.py)
HTML_ATTACK: Final = '"><script>window.__pwned=1</script><img src=x onerror=window.__pwned=2>'
XML_ATTACK: Final = "\x01\x0b]]>&"
PRINCIPAL: Final = f"ops{TERMINAL_ATTACK}{HTML_ATTACK}{XML_ATTACK}-backend"
KEY_NAME: Final = f"share{TERMINAL_ATTACK}<b>{XML_ATTACK}"
HSM_USER: Final = f"officer{TERMINAL_ATTACK}<svg onload=alert(3)>"  # no JSON: raw syslog text
FORMULAS: Final = ("=HYPERLINK(\"http://x\")", " =1+1", "\n=1+1", "\uff1d1+1", "\uff0bSUM(A1)",
                   "@cmd", "\t=1", "-2+3")
# Raw bytes that must never reach a terminal from a table printer.
HOSTILE_RAW: Final = ("\x1b", "\x07", "\u202e", "\x9b")

VAULT_TOKEN: Final = ("hvs.CAESIGQxbHlhdGVyLXNlY3JldC10b2tlbi1ub3QtcmVhbBoeChxodnMu"
                      "WFhYWFhYWFhYWFhYWFhYWFhY")
LEGACY_TOKEN: Final = "s.Q2FuWW91UmVhZFRoaXNUb2tlbg"
ACCESSOR: Final = "Yq9bT3kLmN0pQrStUvWxYz12"
SAS_SIG: Final = "sQ1x%2BSECRETSASsig%3D"
URL_PASSWORD: Final = "hunter2-url-password"
BEARER: Final = "eyJhbGciOiJSUzI1NiJ9.SECRETBEARERTOKEN.c2ln"
CONTEXT_VALUE: Final = "SECRET-CONTEXT-VALUE-4242"
# Never stored anywhere (CONTEXT_VALUE only under redact_encryption_context: true).
SECRETS: Final = (VAULT_TOKEN, LEGACY_TOKEN, ACCESSOR, SAS_SIG, URL_PASSWORD, BEARER)


def _j(s: str) -> str:
    """s as the inside of a JSON string literal."""
    return json.dumps(s)[1:-1]


def _vault_pair(rid: str, path: str, op: str = "update") -> list[str]:
    base = {"auth": {"client_token": "hmac-sha256:aa", "accessor": "hmac-sha256:bb",
                     "display_name": PRINCIPAL, "entity_id": "ent-hostile",
                     "policies": ["default"], "token_type": "service"},
            "request": {"id": rid, "operation": op, "mount_type": "token",
                        "path": path, "remote_address": "198.51.100.9",
                        "headers": {"authorization": [f"Bearer {BEARER}"]}}}
    return [json.dumps({"time": "2024-05-14T10:00:00Z", "type": "request", **base}),
            json.dumps({"time": "2024-05-14T10:00:01Z", "type": "response", **base,
                        "response": {"mount_type": "token"}})]


def write_corpus(root: Path) -> Path:
    """Write the corpus under root (created); returns root."""
    root.mkdir(parents=True, exist_ok=True)
    ct = (SAMPLES / "aws_cloudtrail/ndjson-2026.ndjson").read_text()
    ct = ct.replace("app-backend", _j(PRINCIPAL)).replace('"purpose":"session-store"',
                                                          f'"purpose":"{CONTEXT_VALUE}"')
    # a truncated record: quarantined, its excerpt holds a context value and a password
    ct += ('{"eventVersion":"1.10","eventSource":"kms.amazonaws.com","requestParameters":'
           f'{{"encryptionContext":{{"k":"{CONTEXT_VALUE}"}}}},"errorMessage":'
           f'"https://bob:{URL_PASSWORD}@example.org/x","eventName":"Decrypt"\n')
    (root / "cloudtrail.ndjson").write_text(ct)

    va = (SAMPLES / "hashicorp_vault/vault-audit-file.log").read_text()
    va = va.replace("partner-share", _j(KEY_NAME))
    va = va.rstrip("\n").split("\n")
    va += _vault_pair("tok-1", f"auth/token/revoke/{VAULT_TOKEN}")
    va += _vault_pair("tok-2", f"auth/token/lookup-accessor/{ACCESSOR}")
    va += _vault_pair("tok-3", f"auth/token/lookup/{LEGACY_TOKEN}")
    va.append(f'{{"time":"2024-05-14T10:00:02Z","type":"request","request":{{"path":'
              f'"auth/token/revoke/{VAULT_TOKEN}","headers":{{"Authorization":"Bearer {BEARER}"')
    (root / "vault.log").write_text("\n".join(va) + "\n")

    kv = (SAMPLES / "azure_keyvault/pt1h-auditevent.ndjson").read_text().splitlines()
    unwrap = next(line for line in kv if "unwrapkey?api-version" in line)
    sas = unwrap.replace("unwrapkey?api-version=7.5",
                         f"unwrapkey?api-version=7.5&sv=2022-11-02&sig={SAS_SIG}").replace(
        "cb3f9bf2", "5a5a5a5a")
    creds = unwrap.replace("https://contoso-prod-kv", f"https://ops:{URL_PASSWORD}@contoso-prod-kv"
                           ).replace("cb3f9bf2", "6b6b6b6b")
    kv += [sas, creds, '{"time":"2025-04-11T02:00:09Z","category":"AuditEvent","properties":'
           f'{{"requestUri":"https://v.vault.azure.net/keys/k?sig={SAS_SIG}&x=1"']
    (root / "keyvault.ndjson").write_text("\n".join(kv) + "\n")

    luna = (SAMPLES / "hsm/luna-appliance-syslog.log").read_text().replace("admin", HSM_USER)
    (root / "luna.log").write_text(luna)
    return root
