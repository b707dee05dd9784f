"""Command handlers: one module per command family, dispatched through an explicit table."""
