"""Alarms: the engine, the checks that feed it, and the Alertmanager sink."""
