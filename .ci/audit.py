"""Audit requirements.lock for known vulnerabilities with pip-audit, online or offline.

    python .ci/audit.py                       # CI: `make audit`
    python .ci/audit.py --build-snapshot DIR  # refresh .ci/advisories/pypi-osv.json from a
                                              # checkout of github.com/pypa/advisory-database
    python .ci/audit.py --build-rustsec DIR   # refresh .ci/advisories/rustsec.json from a
                                              # checkout of github.com/rustsec/advisory-db

Order of advisory sources: pip-audit's PyPI service; if PyPI cannot audit every locked
package (offline, or a mirror without the JSON API), pip-audit's OSV service; if that is
unreachable, pip-audit against a local OSV endpoint on 127.0.0.1 that serves the checked-in
snapshot. The run prints which source it used and the snapshot's date. Vulnerabilities
listed in .ci/known-vulnerabilities.toml (with the reason they do not apply) are ignored;
any other one fails the run. A refused network never fails it.

Cargo (parsers/native/Cargo.lock): `cargo audit` when it is installed and can fetch the
RustSec database; otherwise the locked crates are checked here against the checked-in
RustSec snapshot (.ci/advisories/rustsec.json), with the same exceptions file.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import tomllib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

CI = Path(__file__).resolve().parent
REPO = CI.parent
LOCK = REPO / "requirements.lock"
SNAPSHOT = CI / "advisories" / "pypi-osv.json"
KNOWN = CI / "known-vulnerabilities.toml"
CARGO_LOCK = REPO / "parsers" / "native" / "Cargo.lock"
RUSTSEC = CI / "advisories" / "rustsec.json"


def canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, ver = line.partition("==")
            pins[canon(name)] = ver.strip()
    return pins


def affects(vuln: dict[str, Any], name: str, version: str) -> bool:
    try:
        v = Version(version)
    except InvalidVersion:
        return False
    for aff in vuln.get("affected", []):
        if canon(aff.get("package", {}).get("name", "")) != name:
            continue
        if version in aff.get("versions", []):
            return True
        for rng in aff.get("ranges", []):
            if rng.get("type") != "ECOSYSTEM":
                continue
            lo: Version | None = None
            for ev in rng.get("events", []):
                try:
                    if "introduced" in ev:
                        lo = Version("0") if ev["introduced"] == "0" else Version(ev["introduced"])
                    elif "fixed" in ev and lo is not None:
                        if lo <= v < Version(ev["fixed"]):
                            return True
                        lo = None
                    elif "last_affected" in ev and lo is not None:
                        if lo <= v <= Version(ev["last_affected"]):
                            return True
                        lo = None
                except InvalidVersion:
                    continue
            if lo is not None and v >= lo:
                return True
    return False


def serve_snapshot(snapshot: dict[str, Any]) -> ThreadingHTTPServer:
    """An OSV /v1/query endpoint on 127.0.0.1 answering from the snapshot."""
    vulns: dict[str, list[dict[str, Any]]] = snapshot["vulns"]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            q = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            name, version = canon(q["package"]["name"]), q["version"]
            hits = []
            for v in vulns.get(name, []):
                if affects(v, name, version):
                    hit = json.loads(json.dumps(v))
                    for a in hit.get("affected", []):
                        a["package"]["name"] = canon(a["package"]["name"])
                    hits.append(hit)
            body = json.dumps({"vulns": hits} if hits else {}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def pip_audit(extra: list[str], ignores: list[str]) -> tuple[int, dict[str, Any] | None, str]:
    cmd = [sys.executable, "-m", "pip_audit", "-r", str(LOCK), "--no-deps", "--disable-pip",
           "--progress-spinner", "off", "-f", "json", "--timeout", "15", *extra]
    for i in ignores:
        cmd += ["--ignore-vuln", i]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=900,  # noqa: S603
                           check=False)
    except subprocess.TimeoutExpired:
        return -1, None, "timed out"
    try:
        return r.returncode, json.loads(r.stdout), r.stderr
    except json.JSONDecodeError:
        return r.returncode, None, r.stderr.strip().splitlines()[-1:][0] if r.stderr else ""


def audited_all(doc: dict[str, Any] | None) -> bool:
    return doc is not None and not any(d.get("skip_reason") for d in doc["dependencies"])


def main() -> int:
    known = tomllib.loads(KNOWN.read_text()).get("vulnerability", []) if KNOWN.exists() else []
    ignores = [k["id"] for k in known]
    n = len(locked())
    source = "PyPI advisory service (online)"
    _rc, doc, err = pip_audit(["-s", "pypi"], ignores)
    if not audited_all(doc):
        skipped = sum(1 for d in (doc or {"dependencies": []})["dependencies"]
                      if d.get("skip_reason"))
        print(f"audit: PyPI service could not audit {skipped or n} of {n} packages "
              "(offline, or an index without the per-version JSON API); trying OSV")
        source = "OSV (online)"
        _rc, doc, err = pip_audit(["-s", "osv"], ignores)
    if not audited_all(doc):
        why = err.splitlines()[-1][:160] if err else "no answer"
        print(f"audit: OSV unreachable ({why}); using the local advisory snapshot")
        snap = json.loads(SNAPSHOT.read_text())
        srv = serve_snapshot(snap)
        try:
            url = f"http://127.0.0.1:{srv.server_address[1]}/v1/query"
            _rc, doc, err = pip_audit(["-s", "osv", "--osv-url", url], ignores)
        finally:
            srv.shutdown()
        source = (f"local OSV snapshot {SNAPSHOT.relative_to(REPO)} ({snap['source']} @ "
                  f"{snap['commit'][:12]}, {snap['date']}; {len(snap['vulns'])} packages "
                  "with advisories)")
    print(f"audit: advisory source: {source}")
    if doc is None:
        print(f"audit: pip-audit did not run ({err}); reported, not failed")
        return cargo_audit(ignores)
    found = [(d["name"], d["version"], v) for d in doc["dependencies"] for v in d.get("vulns", [])]
    print(f"audit: {len(doc['dependencies'])} locked packages audited, "
          f"{len(found)} known vulnerabilities not listed as non-applicable")
    for k in known:
        print(f"audit: ignored {k['id']} ({k['package']}): {k['reason']}")
    for name, ver, v in found:
        fix = ", ".join(v.get("fix_versions", [])) or "no fix"
        print(f"audit: VULNERABLE {name}=={ver}: {v['id']} (fixed in {fix}): "
              f"{v.get('description', '')[:160]}")
    cargo_rc = cargo_audit(ignores)
    return 1 if found or cargo_rc else 0


def _semver(v: str) -> tuple[int, int, int]:
    core = v.split("-", 1)[0].split("+", 1)[0]
    nums = [*(int(x) for x in re.findall(r"\d+", core)[:3]), 0, 0, 0]
    return nums[0], nums[1], nums[2]


def _req_matches(req: str, version: str) -> bool:
    """Cargo version requirement (`>= 0.24.1, < 0.25`, `^0.23`, `< 0.2`) against a version."""
    v = _semver(version)
    for part in req.split(","):
        m = re.match(r"\s*(>=|<=|>|<|=|\^|~)?\s*([0-9][0-9A-Za-z.+-]*)\s*$", part)
        if not m:
            return False
        op, bound = m.group(1) or "^", m.group(2)
        b = _semver(bound)
        n_parts = len(bound.split("-")[0].split("."))
        if op in ("^", "~"):
            if op == "~" or (b[0] == 0 and b[1] == 0 and n_parts >= 3):
                upper = (b[0], b[1] + 1, 0) if n_parts >= 2 else (b[0] + 1, 0, 0)
            elif b[0] == 0:
                upper = (0, b[1] + 1, 0) if n_parts >= 2 else (1, 0, 0)
            else:
                upper = (b[0] + 1, 0, 0)
            if not (b <= v < upper):
                return False
        elif not {">=": v >= b, "<=": v <= b, ">": v > b, "<": v < b, "=": v == b}[op]:
            return False
    return True


def cargo_locked() -> list[tuple[str, str]]:
    if not CARGO_LOCK.exists():
        return []
    doc = tomllib.loads(CARGO_LOCK.read_text())
    return [(p["name"], p["version"]) for p in doc.get("package", []) if "source" in p]


def cargo_audit(ignores: list[str]) -> int:
    crates = cargo_locked()
    if not crates:
        return 0
    cmd = ["cargo", "audit", "--file", str(CARGO_LOCK)]
    for i in ignores:
        cmd += ["--ignore", i]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600,  # noqa: S603
                           check=False)
        out = r.stdout + r.stderr
        if "error: couldn't fetch advisory database" not in out \
                and "no such command" not in out and "failed to" not in out.lower():
            print("audit: cargo: advisory source: cargo audit (RustSec database, online)")
            print(out.strip())
            return r.returncode
        why = ("cargo audit not installed" if "no such command" in out
               else "cargo audit cannot fetch the RustSec database")
    except (FileNotFoundError, subprocess.TimeoutExpired):
        why = "cargo audit not installed"
    snap = json.loads(RUSTSEC.read_text())
    print(f"audit: cargo: {why}; advisory source: local RustSec snapshot "
          f"{RUSTSEC.relative_to(REPO)} ({snap['source']} @ {snap['commit'][:12]}, "
          f"{snap['date']})")
    bad = 0
    for name, version in crates:
        for adv in snap["advisories"].get(name, []):
            if adv.get("withdrawn") or adv["id"] in ignores:
                continue
            safe = any(_req_matches(r, version)
                       for r in adv.get("patched", []) + adv.get("unaffected", []))
            if safe:
                continue
            kind = adv.get("informational")
            label = f"WARNING ({kind})" if kind else "VULNERABLE"
            print(f"audit: cargo: {label} {name} {version}: {adv['id']} {adv['title']} "
                  f"(patched: {', '.join(adv.get('patched', [])) or 'none'})")
            bad += 0 if kind else 1
    print(f"audit: cargo: {len(crates)} locked crates checked, {bad} vulnerable")
    return 1 if bad else 0


def build_rustsec(db: Path) -> None:
    """Keep the RustSec advisories of the crates in parsers/native/Cargo.lock."""
    names = {n for n, _ in cargo_locked()}
    advisories: dict[str, list[dict[str, Any]]] = {}
    for name in sorted(names):
        for f in sorted((db / "crates" / name).glob("*.md")):
            text = f.read_text()
            front = tomllib.loads(text.split("```toml", 1)[1].split("```", 1)[0])
            adv, vers = front["advisory"], front.get("versions", {})
            title = text.split("```", 2)[2].strip().splitlines()[0].lstrip("# ").strip()
            advisories.setdefault(name, []).append({
                "id": adv["id"], "title": title, "date": str(adv.get("date", "")),
                "informational": adv.get("informational"), "withdrawn": adv.get("withdrawn"),
                "patched": vers.get("patched", []), "unaffected": vers.get("unaffected", [])})
    commit = subprocess.run(["git", "-C", str(db), "log", "-1", "--format=%H %cs"],  # noqa: S603,S607
                            capture_output=True, text=True, check=False).stdout.split()
    RUSTSEC.write_text(json.dumps({
        "source": "github.com/rustsec/advisory-db", "commit": commit[0] if commit else "",
        "date": commit[1] if len(commit) > 1 else "", "advisories": advisories,
    }, indent=1, sort_keys=True, default=str) + "\n")
    print(f"{RUSTSEC}: {sum(map(len, advisories.values()))} advisories for {len(advisories)} "
          "crates")


def build_snapshot(db: Path) -> None:
    """Keep the advisories of the locked packages from a pypa/advisory-database checkout."""
    import yaml

    pins = locked()
    vulns: dict[str, list[dict[str, Any]]] = {}
    for pkg_dir in sorted((db / "vulns").iterdir()):
        if canon(pkg_dir.name) not in pins:
            continue
        for f in sorted(pkg_dir.glob("*.yaml")):
            v = yaml.safe_load(f.read_text())
            keep = {k: v[k] for k in ("id", "aliases", "summary", "withdrawn", "published",
                                      "modified") if k in v}
            keep["details"] = (v.get("details") or "")[:300]
            keep["affected"] = [{"package": a["package"],
                                 "ranges": [r for r in a.get("ranges", [])
                                            if r.get("type") == "ECOSYSTEM"],
                                 "versions": a.get("versions", [])}
                                for a in v.get("affected", [])]
            vulns.setdefault(canon(pkg_dir.name), []).append(json.loads(
                json.dumps(keep, default=str)))
    commit = subprocess.run(["git", "-C", str(db), "log", "-1", "--format=%H %cs"],  # noqa: S603,S607
                            capture_output=True, text=True, check=False).stdout.split()
    SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
    SNAPSHOT.write_text(json.dumps({
        "source": "github.com/pypa/advisory-database", "commit": commit[0] if commit else "",
        "date": commit[1] if len(commit) > 1 else "", "vulns": vulns,
    }, indent=1, sort_keys=True) + "\n")
    print(f"{SNAPSHOT}: {sum(map(len, vulns.values()))} advisories for {len(vulns)} packages")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--build-snapshot":
        build_snapshot(Path(sys.argv[2]))
    elif len(sys.argv) == 3 and sys.argv[1] == "--build-rustsec":
        build_rustsec(Path(sys.argv[2]))
    else:
        sys.exit(main())
