"""Distribution capability flags (erts ``erl_dist_protocol``, "Distribution Flags")."""

from __future__ import annotations

from enum import IntFlag
from typing import Final


class DFlag(IntFlag):
    PUBLISHED = 0x1
    ATOM_CACHE = 0x2
    EXTENDED_REFERENCES = 0x4
    DIST_MONITOR = 0x8
    FUN_TAGS = 0x10
    DIST_MONITOR_NAME = 0x20
    HIDDEN_ATOM_CACHE = 0x40
    NEW_FUN_TAGS = 0x80
    EXTENDED_PIDS_PORTS = 0x100
    EXPORT_PTR_TAG = 0x200
    BIT_BINARIES = 0x400
    NEW_FLOATS = 0x800
    UNICODE_IO = 0x1000
    DIST_HDR_ATOM_CACHE = 0x2000
    SMALL_ATOM_TAGS = 0x4000
    UTF8_ATOMS = 0x10000
    MAP_TAG = 0x20000
    BIG_CREATION = 0x40000
    SEND_SENDER = 0x80000
    BIG_SEQTRACE_LABELS = 0x100000
    EXIT_PAYLOAD = 0x400000
    FRAGMENTS = 0x800000
    HANDSHAKE_23 = 0x1000000
    UNLINK_ID = 0x2000000
    MANDATORY_25_DIGEST = 0x4000000
    SPAWN = 1 << 32
    NAME_ME = 1 << 33
    V4_NC = 1 << 34
    ALIAS = 1 << 35
    LOCAL_EXT = 1 << 36
    ALTACT_SIG = 1 << 37


# What OTP 26+ refuses to connect without (OTP 25 needs all but the last two).
MANDATORY: Final = (
    DFlag.EXTENDED_REFERENCES
    | DFlag.FUN_TAGS
    | DFlag.EXTENDED_PIDS_PORTS
    | DFlag.UTF8_ATOMS
    | DFlag.NEW_FUN_TAGS
    | DFlag.BIG_CREATION
    | DFlag.NEW_FLOATS
    | DFlag.MAP_TAG
    | DFlag.EXPORT_PTR_TAG
    | DFlag.BIT_BINARIES
    | DFlag.HANDSHAKE_23
    | DFlag.UNLINK_ID
    | DFlag.V4_NC
)

# What we announce.  Not PUBLISHED: we are a hidden node.  No atom cache, no
# fragments (we never send huge messages and can read unfragmented ones of
# any size), no spawn/alias: we only need send, link/unlink, monitor and exit.
OUR_FLAGS: Final = (
    MANDATORY
    | DFlag.DIST_MONITOR
    | DFlag.DIST_MONITOR_NAME
    | DFlag.SMALL_ATOM_TAGS
    | DFlag.UNICODE_IO
    | DFlag.SEND_SENDER
    | DFlag.BIG_SEQTRACE_LABELS
    | DFlag.EXIT_PAYLOAD
)

# The peer must have these for us to talk to it (OTP 25 and newer have them).
REQUIRED_FROM_PEER: Final = MANDATORY | DFlag.DIST_MONITOR


def describe(flags: int) -> str:
    """Names of the set flags, for logs and errors."""
    return "|".join(f.name or hex(f.value) for f in DFlag if flags & f) or "0"
