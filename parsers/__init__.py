"""keytrail parsers: raw log bytes -> normalized KeyEvent, one module per log family.

Importing this package registers every parser in `parsers.base.REGISTRY`, in a fixed
order (the order breaks format-detection ties).
"""

from parsers import azure_keyvault, cloudtrail, hsm_cloudhsm, hsm_luna, hsm_nshield, vault
from parsers.base import REGISTRY, LogParser, ParseOptions, Quarantined, Skipped
from parsers.schema import KeyEvent

__all__ = [
    "REGISTRY",
    "KeyEvent",
    "LogParser",
    "ParseOptions",
    "Quarantined",
    "Skipped",
    "azure_keyvault",
    "cloudtrail",
    "hsm_cloudhsm",
    "hsm_luna",
    "hsm_nshield",
    "vault",
]
