"""Replica targets, eco/performance modes and carbon accounting, and the servers that
publish them (External Metrics API, KEDA external scaler, Prometheus metrics)."""

__all__: list[str] = []
