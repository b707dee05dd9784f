"""The maestro: fleet registry and liveness, metric storage, alerts, commands."""
