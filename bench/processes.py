"""The processes the bench counts CPU for: found by the TCP port they listen on.

The broker and Redis the bench talks to are the ones listening on the ports in its own
settings (`kafka.bootstrap`, `redis.url`) — not whichever `kafka.Kafka` process happens to
run on the host, which on a shared machine can be someone else's. Linux only (`/proc`);
elsewhere nothing is found and the CPU figures for those processes are left out.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

LISTEN = "0A"  # the TCP state column of /proc/net/tcp for a listening socket
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def listening_inodes(table: str, port: int) -> set[int]:
    """Socket inodes listening on `port` in the text of /proc/net/tcp or /proc/net/tcp6."""
    inodes: set[int] = set()
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != LISTEN:
            continue
        local_port = int(fields[1].rsplit(":", 1)[1], 16)
        if local_port == port:
            inodes.add(int(fields[9]))
    return inodes


def bootstrap_port(bootstrap: str) -> tuple[str, int]:
    """Host and port of the first broker in a bootstrap list (`host:port[,host:port]`)."""
    first = bootstrap.split(",", 1)[0].strip().split("://", 1)[-1]
    host, _, port = first.rpartition(":")
    return host, int(port)


def redis_port(url: str) -> tuple[str, int]:
    """Host and port of a redis:// or rediss:// URL (6379 when it names none)."""
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or 6379


def listener_pid(port: int, proc: Path = Path("/proc")) -> int | None:
    """The pid of the process holding a socket that listens on `port` on this machine."""
    inodes: set[int] = set()
    for name in ("tcp", "tcp6"):
        try:
            inodes |= listening_inodes((proc / "net" / name).read_text(), port)
        except OSError:
            continue
    if not inodes:
        return None
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for entry in proc.glob("[0-9]*"):
        try:
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) in wanted:
                    return int(entry.name)
        except OSError:  # gone, or not ours to read
            continue
    return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and all its threads so far (Linux /proc); NaN elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_pids(bootstrap: str, redis_url: str) -> dict[str, int]:
    """{"broker": pid, "redis": pid} for those of the two that listen on this machine."""
    found: dict[str, int] = {}
    for role, (host, port) in (("broker", bootstrap_port(bootstrap)), ("redis", redis_port(redis_url))):
        if host in LOCAL_HOSTS and (pid := listener_pid(port)) is not None:
            found[role] = pid
    return found
