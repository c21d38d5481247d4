"""beamside exporter: Prometheus exposition of node snapshots."""
