"""beamside sidecar: attaches to BEAM nodes over Distributed Erlang."""

__version__ = "0.1.0"
