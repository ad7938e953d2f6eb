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
    """Enabled detectors split by kind, with the catalog's accept() filter."""
    loaded: list[tuple[Any, DetectorMeta]] = catalog.load_detectors(config.detectors)
    event = [(d, m) for d, m in loaded if isinstance(d, EventDetector)]
    window = [(d, m) for d, m in loaded if isinstance(d, WindowDetector)]
    inventory = [(d, m) for d, m in loaded if isinstance(d, InventoryDetector)]
    return Detection(event, window, catalog.accept), inventory
