"""The family checks as they were before issue 15 (every tick, every node's
whole module md5 map walked): the reference the cached checks are compared
with, here and in bench/bench_alarms.py.

:class:`ReferenceChecker` is an :class:`AlarmChecker` (same node checks, same
engine) whose :meth:`on_family` is the former code, unchanged but for the
method names (``_old_*``) and the md5 and env maps it keeps itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sidecar.alarms.checks import MAX_INFO_ITEMS, AlarmChecker, _NodeHistory
from sidecar.alarms.engine import Finding
from sidecar.model import EnvValue, NodeSnapshot, NodeState, NodeStatus
from sidecar.redact import redact_named

__all__ = ["ReferenceChecker"]


class ReferenceChecker(AlarmChecker):
    """Family checks evaluated from scratch at every call of :meth:`on_family`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._md5: dict[str, Mapping[str, str]] = {}
        self._env: dict[str, Mapping[tuple[str, str], EnvValue | None]] = {}

    def on_snapshot(self, snap: NodeSnapshot) -> None:
        super().on_snapshot(snap)
        if snap.modules is not None:
            self._md5[snap.node] = snap.modules
        if snap.env is not None:
            self._env[snap.node] = snap.env

    def forget(self, node: str) -> None:
        super().forget(node)
        self._md5.pop(node, None)
        self._env.pop(node, None)

    def on_family(
        self, snapshots: Mapping[str, NodeSnapshot], statuses: Iterable[NodeStatus]
    ) -> None:
        up: dict[str, list[NodeSnapshot]] = {}
        up_nodes = set()
        for status in statuses:
            if status.state is NodeState.UP and status.node in snapshots:
                up.setdefault(status.family, []).append(snapshots[status.node])
                up_nodes.add(status.node)
        for family, members in up.items():
            self._old_dist_links(family, members, up_nodes)
            source = f"family:{family}"
            r: dict[str, Finding | None] = {}
            if len(members) >= 2:
                r.update(self._old_module_versions(members))
                r.update(self._old_app_versions(members))
                r.update(self._old_global_config(family, members))
                r.update(self._old_time_checks(source, members))
            else:
                r.update(
                    {
                        a: None
                        for a in (
                            "different_module_versions",
                            "different_application_versions",
                            "global_config_missing",
                            "global_config_inconsistent",
                            "time_zone_mismatch",
                            "clock_skew",
                        )
                        if self._enabled(a)
                    }
                )
            self._report(source, "", family, r)

    def _old_dist_links(self, family: str, members: list[NodeSnapshot], up_nodes: set[str]) -> None:
        names = {m.node for m in members}
        for snap in members:
            if snap.dist_nodes is None:
                continue
            peers = set(snap.dist_nodes)
            history = self._history.setdefault(snap.node, _NodeHistory())
            history.peers_seen |= peers & names
            lost = sorted((history.peers_seen & up_nodes & names) - peers - {snap.node})
            self._report(
                snap.node,
                snap.node,
                family,
                self._flag(
                    "dist_link_down",
                    bool(lost),
                    f"{snap.node} has no distribution link to {', '.join(lost[:5])}",
                    {"lost": lost[:MAX_INFO_ITEMS]},
                ),
            )

    def _old_module_versions(self, members: list[NodeSnapshot]) -> dict[str, Finding | None]:
        md5s = {m.node: self._md5[m.node] for m in members if m.node in self._md5}
        if len(md5s) < 2:
            return {}
        by_module: dict[str, dict[str, str]] = {}
        for node, modules in md5s.items():
            for name, digest in modules.items():
                if not name.startswith("beamside_"):
                    by_module.setdefault(name, {})[node] = digest
        differing = {
            mod: versions
            for mod, versions in sorted(by_module.items())
            if len(set(versions.values())) > 1
        }
        listed = ", ".join(list(differing)[:5])
        return self._flag(
            "different_module_versions",
            bool(differing),
            f"{len(differing)} module(s) differ across the family: {listed}",
            {"modules": dict(list(differing.items())[:MAX_INFO_ITEMS])},
        )

    def _old_app_versions(self, members: list[NodeSnapshot]) -> dict[str, Finding | None]:
        apps: dict[str, dict[str, str]] = {}
        known = []
        for m in members:
            running = m.versions.applications if m.versions is not None else None
            if running is None:
                continue
            known.append(m.node)
            for app, vsn in running.items():
                apps.setdefault(app, {})[m.node] = vsn
        if len(known) < 2:
            return {}
        differing = {
            app: {n: versions.get(n, "missing") for n in known}
            for app, versions in sorted(apps.items())
            if len(versions) < len(known) or len(set(versions.values())) > 1
        }
        listed = ", ".join(list(differing)[:5])
        return self._flag(
            "different_application_versions",
            bool(differing),
            f"application versions differ across the family: {listed}",
            {"applications": dict(list(differing.items())[:MAX_INFO_ITEMS])},
        )

    def _old_global_config(
        self, family: str, members: list[NodeSnapshot]
    ) -> dict[str, Finding | None]:
        params = self._params_for(family)
        if not params:
            return {"global_config_missing": None, "global_config_inconsistent": None}
        envs = {m.node: self._env[m.node] for m in members if m.node in self._env}
        if len(envs) < 2:
            return {}
        missing: dict[str, list[str]] = {}
        inconsistent: dict[str, dict[str, str]] = {}
        for param in params:
            values = {node: env.get((param.app, param.key)) for node, env in envs.items()}
            set_on = {n: v for n, v in values.items() if v is not None}
            if set_on and len(set_on) < len(values):
                missing[str(param)] = sorted(n for n, v in values.items() if v is None)
            if len({v.hash for v in set_on.values()}) > 1:
                # The values go to Alertmanager and Loki: redacted (a key
                # naming a secret shows its marker, secrets inside a value theirs).
                inconsistent[str(param)] = {
                    n: redact_named(param.key, v.text) for n, v in set_on.items()
                }
        return {
            **self._flag(
                "global_config_missing",
                bool(missing),
                f"global parameter(s) unset on some nodes: {', '.join(missing)}",
                {"missing_on": missing},
            ),
            **self._flag(
                "global_config_inconsistent",
                bool(inconsistent),
                f"global parameter(s) differ: {', '.join(inconsistent)}",
                {"values": inconsistent},
            ),
        }

    def _old_time_checks(
        self, source: str, members: list[NodeSnapshot]
    ) -> dict[str, Finding | None]:
        offsets = {m.node: m.time.utc_offset_s if m.time else None for m in members}
        known_tz = {n: o for n, o in offsets.items() if o is not None}
        r: dict[str, Finding | None] = {}
        if len(known_tz) >= 2:
            zones = sorted({o for o in known_tz.values()})
            r.update(
                self._flag(
                    "time_zone_mismatch",
                    len(zones) > 1,
                    f"nodes run with UTC offsets {', '.join(f'{z:+.0f}s' for z in zones)}",
                    {"utc_offset_s": known_tz},
                )
            )
        skews: dict[str, float] = {}
        for m in members:
            node_time = m.system_time_us
            if node_time is not None:
                # Node clock minus ours at the middle of the round trip.
                skews[m.node] = node_time / 1e6 - (m.taken_at - m.duration / 2)
        if len(skews) >= 2:
            spread = max(skews.values()) - min(skews.values())
            r.update(
                self._graded(
                    "clock_skew",
                    source,
                    spread,
                    lambda v: f"node clocks differ by {v:.2f}s",
                    {"offsets_s": {n: round(s, 3) for n, s in skews.items()}},
                )
            )
        return r
