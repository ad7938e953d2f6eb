"""Command-line logging: keytrail's own one-line messages on stderr, client libraries quiet.

The search-engine clients log a warning with a full traceback for every failed request
(and urllib3 one per retry); keytrail already retries, counts and reports each failure
itself, one line per retry episode. `--verbose` brings the libraries' detail back.
"""

from __future__ import annotations

import logging
import sys
from typing import Final

LIBRARY_LOGGERS: Final[tuple[str, ...]] = ("opensearch", "elasticsearch", "elastic_transport",
                                           "urllib3")


def configure(verbose: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("keytrail: %(message)s"))
    own = logging.getLogger("keytrail")
    own.handlers[:] = [handler]
    own.propagate = False
    own.setLevel(logging.DEBUG if verbose else logging.INFO)
    for name in LIBRARY_LOGGERS:
        lib = logging.getLogger(name)
        lib.propagate = False
        if verbose:
            detail = logging.StreamHandler(sys.stderr)
            detail.setFormatter(logging.Formatter("%(name)s: %(levelname)s %(message)s"))
            lib.handlers[:] = [detail]
            lib.setLevel(logging.DEBUG)
        else:
            lib.handlers[:] = [logging.NullHandler()]
            lib.setLevel(logging.CRITICAL + 1)
