"""Shared test support: real-component runners (Erlang nodes, Prometheus, Alertmanager,
the beamside daemon), test doubles (Loki) and waiting helpers; no tests here."""
