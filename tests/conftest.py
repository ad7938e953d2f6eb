"""Shared pytest configuration.

Keep the sections separate: other fixtures go below the servers section.
"""

# --- real servers (DESIGN.md section 8): opensearch, elasticsearch, flink_cluster,
# --- seaweedfs, chromium. Defined in tests/servers/fixtures.py; skip with a reason when a
# --- server cannot start, FAIL instead when CI=true.
from tests.servers.fixtures import *  # noqa: F403

# --- other fixtures below ---
