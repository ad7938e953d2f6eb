"""Write requirements.lock: the exact versions of keytrail[dev]'s dependency closure as
installed in the given venv (`make lock` after changing pyproject.toml dependencies).

The Makefile installs with `-c requirements.lock`, so CI gets exactly these versions, and
.ci/audit.py checks them for known vulnerabilities. Run with the venv's python.
"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]


def canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(roots: list[Requirement]) -> dict[str, str]:
    env = default_environment()
    seen: dict[str, str] = {}
    todo = [(r, frozenset(r.extras)) for r in roots]
    done: set[tuple[str, frozenset[str]]] = set()
    while todo:
        req, extras = todo.pop()
        key = (canon(req.name), extras)
        if key in done:
            continue
        done.add(key)
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            sys.exit(f"lock: {req.name} is required but not installed in this venv")
        seen[canon(req.name)] = f"{dist.metadata['Name']}=={dist.version}"
        for spec in dist.requires or []:
            sub = Requirement(spec)
            if sub.marker is not None and not any(
                    sub.marker.evaluate({**env, "extra": e}) for e in (extras or {""})):
                continue
            todo.append((sub, frozenset(sub.extras)))
    return seen


def main() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    env = default_environment()
    roots = [Requirement(s) for s in project["dependencies"]
             + project["optional-dependencies"]["dev"]]
    roots = [r for r in roots if r.marker is None or r.marker.evaluate(env)]
    pins = closure(roots)
    pins.pop("keytrail", None)
    py = ".".join(map(str, sys.version_info[:2]))
    lines = [f"# keytrail[dev] dependency closure, CPython {py} on Linux: written by "
             "`make lock` (.ci/lock.py)", "# from the installed venv. CI installs with "
             "`-c requirements.lock`; .ci/audit.py audits it.",
             *sorted(pins.values(), key=str.lower)]
    (REPO / "requirements.lock").write_text("\n".join(lines) + "\n")
    print(f"requirements.lock: {len(pins)} packages")


if __name__ == "__main__":
    main()
