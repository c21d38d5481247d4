"""Test support for the node's own view of memory and disk (alarms.memory_view,
alarms.disk_view): what the test reads itself to compare (/proc/meminfo, df,
the cgroup files), a real memory cgroup to put a node in, and nodes started in
a private mount namespace (a tmpfs as their data directory, or a constructed
cgroup v2 tree when the host has v1)."""

from __future__ import annotations

import contextlib
import secrets
import shlex
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tests.support.nodes import ErlangNode

if TYPE_CHECKING:
    from tests.conftest import NodeFactory

MiB = 1024 * 1024


def meminfo() -> dict[str, int]:
    """/proc/meminfo in bytes."""
    out = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts:
            out[key] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return out


@dataclass(frozen=True)
class Df:
    total: int
    used: int
    available: int
    mount: str

    @property
    def capacity(self) -> float:
        return self.used * 100 / (self.used + self.available)


def df(path: str | Path, pid: int | None = None) -> Df:
    """``df -P -k path`` read by the test (in the mount namespace of ``pid``)."""
    cmd = ["df", "-P", "-k", str(path)]
    if pid is not None:
        cmd = ["nsenter", "-t", str(pid), "-m", *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=10).stdout
    fields = out.splitlines()[-1].split()
    blocks, used, avail = (int(f) * 1024 for f in fields[1:4])
    return Df(blocks, used, avail, " ".join(fields[5:]))


# --------------------------------------------------------------------------- cgroups


def _mounts() -> list[tuple[str, str, str, str]]:
    """(fstype, super options, root, mount point) of /proc/self/mountinfo."""
    rows = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        before, _, after = line.partition(" - ")
        b, a = before.split(), after.split()
        rows.append((a[0], a[2], b[3], b[4]))
    return rows


def cgroup_version() -> int:
    """1 when the memory controller is on a v1 hierarchy here, else 2."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, _ = line.split(":", 2)
        if "memory" in controllers.split(","):
            return 1
    return 2


@dataclass
class MemoryCgroup:
    """A memory cgroup the test made: v1 (memory.limit_in_bytes) or v2 (memory.max)."""

    path: Path
    version: int

    def set_limit(self, limit: int) -> None:
        name = "memory.limit_in_bytes" if self.version == 1 else "memory.max"
        (self.path / name).write_text(str(limit))

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def usage_and_inactive_file(self) -> tuple[int, int]:
        """What the kernel counts against the limit: usage, inactive file cache."""
        if self.version == 1:
            usage = int((self.path / "memory.usage_in_bytes").read_text())
            key = "total_inactive_file"
        else:
            usage = int((self.path / "memory.current").read_text())
            key = "inactive_file"
        stat = dict(line.split() for line in (self.path / "memory.stat").read_text().splitlines())
        return usage, int(stat.get(key, 0))

    def remove(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:  # EBUSY while the killed node's threads exit
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


@contextlib.contextmanager
def memory_cgroup(limit: int) -> Iterator[MemoryCgroup]:
    """A fresh memory cgroup with ``limit`` (root needed), removed afterwards
    (the nodes put into it must be gone by then)."""
    version = cgroup_version()
    name = f"beamside-test-{secrets.token_hex(4)}"
    if version == 1:
        mount = next(m for m in _mounts() if m[0] == "cgroup" and "memory" in m[1].split(","))
        own = next(
            line.split(":", 2)[2]
            for line in Path("/proc/self/cgroup").read_text().splitlines()
            if "memory" in line.split(":", 2)[1].split(",")
        )
        rel = own[len(mount[2]) :] if own.startswith(mount[2]) and mount[2] != "/" else own
        parent = Path(mount[3] + rel.rstrip("/"))
    else:
        mount = next(m for m in _mounts() if m[0] == "cgroup2")
        parent = Path(mount[3])
        controllers = (parent / "cgroup.subtree_control").read_text().split()
        assert "memory" in controllers, f"cgroup v2 at {parent}: memory controller not enabled"
    group = MemoryCgroup(parent / name, version)
    group.path.mkdir()
    try:
        group.set_limit(limit)
        yield group
    finally:
        group.remove()


# --------------------------------------------------------------------------- namespaces


class NamespacedNode(ErlangNode):
    """A node started by ``unshare -m sh -c SETUP`` in a private mount namespace:
    SETUP runs first (``$$`` is the node's pid: sh and erl exec), and the mounts
    it makes vanish with the node."""

    def __init__(self, *args: object, setup: Sequence[str], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.setup = list(setup)

    def command(self) -> list[str]:
        script = " && ".join([*self.setup, 'exec "$@"'])
        return ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh",
                *super().command()]  # fmt: skip


def tmpfs_setup(path: Path, size: int) -> list[str]:
    """Mount a tmpfs of ``size`` bytes on ``path`` (made if missing)."""
    p = shlex.quote(str(path))
    return [f"mkdir -p {p}", f"mount -t tmpfs -o size={size} beamside-test {p}"]


def mnesia_on_tmpfs_node(factory: NodeFactory, tmp_path: Path, size: int) -> NamespacedNode:
    """A started OTP 25 node running mnesia, whose directory (its data
    directory, as RabbitMQ's) is ``tmp_path/data/db`` on a tmpfs of ``size``
    bytes mounted on ``tmp_path/data``, of its own."""
    data = tmp_path / "data"
    db = data / "db"
    node = NamespacedNode(
        "otp25",
        cookie=factory.cookie,
        epmd_port=factory.epmd_port,
        log_dir=factory.log_dir,
        extra_args=["-mnesia", "dir", f'"{db}"'],
        setup=[*tmpfs_setup(data, size), f"mkdir -p {db}"],
    )
    factory.nodes.append(node)
    node.start()
    assert node.eval("application:ensure_all_started(mnesia).").startswith("{ok,")
    return node


def fake_cgroup_v2_setup(
    root: Path, files: dict[str, str], self_path: str, mount_root: str
) -> list[str]:
    """A constructed cgroup v2 view for a host that has v1: ``root`` holds the
    tree (``files``: relative path -> content), mounted in mountinfo as a
    cgroup2 file system whose root is ``mount_root`` (what a container's cgroup
    namespace or bind mount shows), and /proc/self/cgroup says ``0::self_path``."""
    for rel, content in files.items():
        f = root / "tree" / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(content)
    (root / "cgroup").write_text(f"0::{self_path}\n")
    tree = str(root / "tree").replace(" ", "\\040")
    (root / "mountinfo").write_text(
        "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
        f"999 27 0:999 {mount_root} {tree} rw,nosuid,nodev,noexec - cgroup2 cgroup2 rw\n"
    )
    q = shlex.quote
    return [
        f"mount --bind {q(str(root / 'cgroup'))} /proc/$$/cgroup",
        f"mount --bind {q(str(root / 'mountinfo'))} /proc/$$/mountinfo",
    ]


def pid_of(node: ErlangNode) -> int:
    pid = node.os_pid
    assert pid is not None
    return pid
