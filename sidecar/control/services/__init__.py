"""One servicer per ``beamside.v1`` service (see ``sidecar/control/server.py``)."""
