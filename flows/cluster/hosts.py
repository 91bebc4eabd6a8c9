"""Drill hosts on one machine: a network namespace and a UTS namespace per host.

Host ``i`` (1, 2, ...) is ``ip netns`` ``chaos-<pid>-drill-0i`` with a veth pair
to the root namespace, where the Prefect server listens: root end
``10.213.<n>.<4i-3>/30``, host end ``.<4i-2>/30`` and a default route through
the root end. The server binds the root end of host 1, which every host reaches
through its own gateway (the root namespace owns all its addresses). Commands
run in the host with :meth:`DrillHost.command`: ``ip netns exec`` then
``unshare --uts`` setting the hostname (``drill-01``), so ``results.json``
records it. Names carry our pid, so parallel clusters never collide.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import shlex
import signal
import subprocess

from flows.errors import DeployError

__all__ = ["DrillHost", "free_subnet"]

log = logging.getLogger("flows.cluster.hosts")
PREFIX = "10.213"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and out.returncode != 0:
        raise DeployError(
            f"hosts: `ip {' '.join(args)}` exited {out.returncode}: {out.stderr.strip()}; "
            "network namespaces need root (CAP_NET_ADMIN)"
        )
    return out


def free_subnet(seed: int) -> int:
    """A third octet ``n`` such that nothing on this machine uses ``10.213.n.0/24`` yet."""
    used = _ip("-o", "addr", "show").stdout
    for k in range(256):
        n = (seed + k) % 256
        if f" {PREFIX}.{n}." not in used:
            return n
    raise DeployError(f"hosts: every {PREFIX}.N.0/24 is in use here; remove stale veths")


class DrillHost:
    """Drill host number ``index`` (1-based) of the cluster ``tag`` in ``10.213.<subnet>.*``."""

    def __init__(self, tag: str, index: int, subnet: int) -> None:
        self.index = index
        self.hostname = f"drill-{index:02d}"
        self.netns = f"{tag}-{self.hostname}"
        self.veth = f"{tag.replace('chaos-', 'ch')}h{index}"[:15]
        base = ipaddress.IPv4Address(f"{PREFIX}.{subnet}.0") + 4 * (index - 1)
        self.gateway = str(base + 1)  # root end
        self.address = str(base + 2)  # host end
        self.created = False

    def create(self) -> None:
        _ip("netns", "add", self.netns)
        self.created = True
        _ip("link", "add", self.veth, "type", "veth", "peer", "name", "eth0", "netns", self.netns)
        _ip("addr", "add", f"{self.gateway}/30", "dev", self.veth)
        _ip("link", "set", self.veth, "up")
        inside = ("ip", "netns", "exec", self.netns, "ip")
        for args in (
            ("addr", "add", f"{self.address}/30", "dev", "eth0"),
            ("link", "set", "eth0", "up"),
            ("link", "set", "lo", "up"),  # the drills' supervisors bind 127.0.0.1 in here
            ("route", "add", "default", "via", self.gateway),
        ):
            _ip(*inside[1:], *args)
        log.info("hosts.created netns=%s veth=%s address=%s", self.netns, self.veth, self.address)

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` run inside this host: its network namespace and its own hostname."""
        inner = f"hostname {shlex.quote(self.hostname)} && exec {shlex.join(argv)}"
        return ["ip", "netns", "exec", self.netns, "unshare", "--uts", "sh", "-c", inner]

    def pids(self) -> list[int]:
        """Every process inside this host's network namespace."""
        if not self.created:
            return []
        out = _ip("netns", "pids", self.netns, check=False).stdout
        return [int(p) for p in out.split() if p.isdigit()]

    def destroy(self) -> list[int]:
        """Kill what still runs inside, delete the namespace (and with it the veth pair)."""
        killed = []
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
        if self.created:
            _ip("netns", "del", self.netns, check=False)
            _ip("link", "del", self.veth, check=False)  # gone with the peer; a no-op then
            self.created = False
        log.info("hosts.destroyed netns=%s killed=%s", self.netns, killed)
        return killed
