"""keytrail pipelines: Beam wiring, sources, sinks, the local store and the CLI."""
