"""The node model: what beamside knows of each node, as frozen typed values.

Data flows one way: the distribution layer (:mod:`sidecar.erldist`) carries
the agents' replies (:mod:`sidecar.agents`), :func:`decode_snapshot` turns a
collect reply into a :class:`NodeSnapshot` once, the node manager keeps the
last one per node with its :class:`NodeStatus`, and the exporter, the alarm
checks, the notifier and the control plane read those.
"""

from .sections import (
    Alarms,
    CodeChange,
    ConfigChange,
    DiskView,
    EnvValue,
    EventSection,
    Folsom,
    FolsomMetric,
    Limits,
    Memory,
    MemoryView,
    NodeTime,
    OsMon,
    Poolboy,
    PoolboyPool,
    ProcessEntry,
    Processes,
    Ranch,
    RanchListener,
    SaslAlarm,
    SectionError,
    StartupFiles,
    Sysmon,
    System,
    Versions,
)
from .snapshot import EXPORTER_SECTIONS, NodeSnapshot, decode_snapshot
from .status import NodeState, NodeStatus

__all__ = [
    "EXPORTER_SECTIONS",
    "Alarms",
    "CodeChange",
    "ConfigChange",
    "DiskView",
    "EnvValue",
    "EventSection",
    "Folsom",
    "FolsomMetric",
    "Limits",
    "Memory",
    "MemoryView",
    "NodeSnapshot",
    "NodeState",
    "NodeStatus",
    "NodeTime",
    "OsMon",
    "Poolboy",
    "PoolboyPool",
    "ProcessEntry",
    "Processes",
    "Ranch",
    "RanchListener",
    "SaslAlarm",
    "SectionError",
    "StartupFiles",
    "Sysmon",
    "System",
    "Versions",
    "decode_snapshot",
]
