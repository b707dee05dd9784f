"""The maestro's embedded store: one SQLite file (WAL) per replica under the data dir."""
