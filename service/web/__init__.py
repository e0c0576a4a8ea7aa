"""HTTP handlers: they parse and answer; providers translate; ingest decides."""
