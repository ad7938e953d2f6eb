"""Loader for the compiled fast paths (parsers/native/, Rust via PyO3).

The Python parsers are the reference: the compiled functions return None for any record
they are not certain about, and the caller then parses it in Python. Without the
compiled module (not built, or KEYTRAIL_NATIVE=0) every record takes the Python path and
the results are identical, only slower. Build it with `make native`.
"""

from __future__ import annotations

import importlib.util
import os
from types import ModuleType

from parsers import schema

# What the parsers call; a build missing any of them (stale .so) is not used at all.
REQUIRED: tuple[str, ...] = (
    "init", "CloudTrailLines", "cloudtrail_document", "keyvault_lines", "keyvault_document",
    "vault_init", "VaultStream",
)


def _load() -> ModuleType | None:
    if os.environ.get("KEYTRAIL_NATIVE", "1") == "0":
        return None
    dev_dir = os.environ.get("KEYTRAIL_NATIVE_DIR")  # a development build elsewhere
    try:
        if dev_dir:

            import sysconfig

            so = os.path.join(dev_dir, "_native" + sysconfig.get_config_var("EXT_SUFFIX"))
            spec = importlib.util.spec_from_file_location("parsers._native", so)
            if spec is None or spec.loader is None:
                return None
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
        else:
            mod = importlib.import_module("parsers._native")
    except ImportError:
        return None
    missing = [name for name in REQUIRED if not hasattr(mod, name)]
    if missing:
        import warnings

        warnings.warn(f"parsers/_native is stale (no {', '.join(missing)}); using the Python "
                      "parsers. Rebuild it with `make native`.", stacklevel=2)
        return None
    mod.init(schema.KeyEvent, schema.OPERATION_CLASS, schema.ECS_CATEGORY,
             schema.ECS_TYPE, schema._INFO)
    return mod


NATIVE: ModuleType | None = _load()


def available() -> bool:
    return NATIVE is not None
