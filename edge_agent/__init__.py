"""Areté edge agent: status, metrics and commands for one machine."""
