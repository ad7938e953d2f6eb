"""Watch-listed objects: every read of a key or secret the user marked sensitive is a signal
that alerts (the single-read alert the burst and rare-reader baselines deliberately avoid)."""

from __future__ import annotations

import fnmatch
from typing import Any, ClassVar, Final

from detectors.base import EventDetector, Finding
from detectors.common import finding_for_event, principal_identity, who
from parsers.schema import KeyEvent

# Reads that hand out the value (a secret's plaintext, a key's material) or use it to reveal
# protected data.
VALUE_READS: Final[frozenset[str]] = frozenset({"export", "decrypt", "unwrap"})


class SensitiveObjectRead(EventDetector):
    """Any successful read of a watch-listed key or secret by an identity not listed as one
    of its expected readers. Empty `objects` (the default): the detector never fires."""

    id: ClassVar[str] = "sensitive_object_read"
    operations: ClassVar[frozenset[str] | None] = VALUE_READS

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"objects": [], "expected_readers": []}

    def match(self, ev: KeyEvent) -> Finding | None:
        objects = self.params["objects"]
        if not objects or ev.outcome != "success" or ev.operation not in VALUE_READS:
            return None
        uid = ev.key_uid or ""
        if not any(fnmatch.fnmatchcase(uid, g) for g in objects):
            return None
        principal = ev.user_id or ""
        if any(fnmatch.fnmatchcase(principal, g) or fnmatch.fnmatchcase(
                principal_identity(principal), g) for g in self.params["expected_readers"]):
            return None
        return finding_for_event(
            ev, f"{who(ev)} read watch-listed {ev.key_kind or 'object'} {uid} ({ev.action}). "
            "It is on the sensitive-object watch list (detectors.sensitive_object_read.params."
            "objects) and the caller is not one of its expected readers.")
