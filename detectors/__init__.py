"""keytrail detectors: events, inventory and usage graph -> alerts (plain objects, no Beam)."""
