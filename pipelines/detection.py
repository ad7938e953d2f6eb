"""Bridge from the user config to prepared detectors for the pipeline's stages."""

from __future__ import annotations

from typing import Any

from detectors import catalog
from detectors.base import DetectorMeta, EventDetector, InventoryDetector, WindowDetector
from pipelines.config import KeytrailConfig
from pipelines.process import Detection


def load_detection(
    config: KeytrailConfig,
) -> tuple[Detection | None, list[tuple[InventoryDetector, DetectorMeta]]]:
    """Enabled detectors split by kind. Every finding is kept as a signal: allow-lists,
    suppressions and exceptions are applied by the alert tier (detectors.alerting), which
    keeps a suppressed detection's evidence."""
    loaded: list[tuple[Any, DetectorMeta]] = catalog.load_detectors(config.detectors)
    event = [(d, m) for d, m in loaded if isinstance(d, EventDetector)]
    window = [(d, m) for d, m in loaded if isinstance(d, WindowDetector)]
    inventory = [(d, m) for d, m in loaded if isinstance(d, InventoryDetector)]
    return Detection(event, window, _keep_every_signal), inventory


def _keep_every_signal(det: Any, meta: DetectorMeta, finding: Any) -> bool:
    return True
