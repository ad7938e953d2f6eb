#!/usr/bin/env python3
"""Write an executable "launcher" jar whose manifest points at a directory of jars.

    mkjar.py OUT.jar MAIN_CLASS LIBDIR

Class-Path entries are relative to OUT.jar's directory (the JVM resolves them against
the jar's own location), so OUT.jar and LIBDIR must stay side by side. `java -jar
OUT.jar ARGS` then runs MAIN_CLASS with every jar of LIBDIR on the classpath.
Add-Opens/Add-Exports let Flink 1.x run on Java 17 without extra JVM flags.
"""

import os
import sys
import zipfile

ADD_OPENS = " ".join(
    f"java.base/{p}"
    for p in (
        "java.lang",
        "java.lang.invoke",
        "java.lang.reflect",
        "java.io",
        "java.net",
        "java.nio",
        "java.text",
        "java.time",
        "java.util",
        "java.util.concurrent",
        "java.util.concurrent.atomic",
        "java.util.concurrent.locks",
        "sun.nio.ch",
    )
)
ADD_EXPORTS = "java.base/sun.net.util java.base/sun.nio.ch java.rmi/sun.rmi.registry"


def _wrap(line: str) -> bytes:
    """Manifest lines are at most 72 bytes; continuation lines start with one space."""
    raw = line.encode("utf-8")
    out = [raw[:72]]
    raw = raw[72:]
    while raw:
        out.append(b" " + raw[:71])
        raw = raw[71:]
    return b"\r\n".join(out) + b"\r\n"


def main() -> int:
    out, main_class, libdir = sys.argv[1:4]
    base = os.path.dirname(os.path.abspath(out))
    rel = os.path.relpath(os.path.abspath(libdir), base)
    jars = sorted(j for j in os.listdir(libdir) if j.endswith(".jar"))
    if not jars:
        print(f"mkjar: no jars in {libdir}", file=sys.stderr)
        return 1
    cp = " ".join(f"{rel}/{j}" for j in jars)
    manifest = b"".join(
        _wrap(line)
        for line in (
            "Manifest-Version: 1.0",
            "Created-By: keytrail .ci/mkjar.py",
            f"Main-Class: {main_class}",
            f"Class-Path: {cp}",
            f"Add-Opens: {ADD_OPENS}",
            f"Add-Exports: {ADD_EXPORTS}",
        )
    ) + b"\r\n"
    tmp = out + ".tmp"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("META-INF/MANIFEST.MF", manifest)
    os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
