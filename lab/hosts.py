"""Hosts on real links: network namespaces joined by a bridge, each host's link shaped by `tc tbf`.

Every host is a network namespace with one veth into a private bridge in the root namespace
(addresses in 198.18.0.0/15, the range reserved for network benchmarks; no default route, so
nothing leaves the bridge). A host's link is shaped in both directions by the kernel's
token-bucket filter: its egress (`eth0` inside the host) and its ingress (the bridge side of
its veth), like a full-duplex link of `mbps` megabit/s. Latency is not shaped (`netem` is not
available on these machines): it stays a simulated knob (`LinkConfig`).

    >>> hosts = Hosts.create(2, link_mbps=10)      # lab-<pid>a-h0, lab-<pid>a-h1
    >>> hosts.set_rate(1, 2.5)                      # live: host 1 becomes a straggler
    >>> hosts.stop()                                # namespaces, veths, bridge: all gone

Needs root (or CAP_NET_ADMIN). Everything a `Hosts` makes is removed by `stop()`, by a small
reaper process when the process that made them dies (a killed notebook kernel: gone within
about a second) or its cluster's lease goes stale, and, for leftovers of a crash of both, by the
next `Hosts.create` (names carry the owner's pid).

This file runs as a script for the reaper (`python lab/hosts.py --reap ...`): keep its top
level to the standard library.
"""
from __future__ import annotations

import ipaddress
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import List, Optional, Sequence

if __package__:
    from .pids import pid_alive
else:  # the reaper runs this file as a script (`python -I -S lab/hosts.py --reap ...`): pids.py is beside it
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from pids import pid_alive

PREFIX = "lab"
NET = ipaddress.ip_network("198.18.0.0/15")
_NS_RE = re.compile(r"^lab-(\d+)([a-z])-([a-z0-9]+)$")          # namespace: lab-<pid><g>-<host>
_LINK_RE = re.compile(r"^lab(\d+)([a-z])(?:v\d+|br)(?:@\S*)?$")  # bridge / veth: lab<pid><g>br, lab<pid><g>v<i>
_NAME_RE = re.compile(r"^[a-z0-9]{1,12}$")
MAX_MBPS = 100_000.0
_groups = 0  # letters a..z: groups made by this process


def unavailable() -> Optional[str]:
    """None when this process may make hosts, else one line saying why and what to do."""
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"hosts need `{tool}` from iproute2: install it (apt-get install iproute2)"
    if os.geteuid() != 0:
        if not _cap_eff() & (1 << 12):  # CAP_NET_ADMIN
            return ("hosts on real links need root or CAP_NET_ADMIN (network namespaces, tc): run as root "
                    "(e.g. in a container started with --cap-add NET_ADMIN), or use the simulated link "
                    "(cfg.replace(bandwidth_mbps=...), labelled SIMULATED)")
    return None


def _cap_eff() -> int:
    """This process's effective capabilities (a bit mask)."""
    try:
        with open("/proc/self/status") as f:
            return int(next(l for l in f if l.startswith("CapEff:")).split()[1], 16)
    except (OSError, StopIteration, ValueError):
        return 0


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(list(cmd), capture_output=True, text=True, timeout=30)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {(p.stderr or p.stdout).strip()}")
    return p


def namespaces() -> List[str]:
    """Names of every namespace this project made that still exists (anybody's)."""
    try:
        names = os.listdir("/run/netns")      # where `ip netns add` mounts them
    except OSError:
        names = [l.split()[0] for l in _run("ip", "netns", "list", check=False).stdout.splitlines() if l.strip()]
    return sorted(n for n in names if _NS_RE.match(n))


def _links() -> List[str]:
    out = _run("ip", "-o", "link", "show", check=False).stdout
    names = [l.split(":")[1].strip().split("@")[0] for l in out.splitlines() if l.count(":") >= 2]
    return [n for n in names if _LINK_RE.match(n)]


def _kill_in(ns: str) -> None:
    """SIGKILL every process inside namespace `ns` (engines a dead notebook left there)."""
    for pid in _run("ip", "netns", "pids", ns, check=False).stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (OSError, ValueError):
            pass


def remove_group(gid: str, extra_pids: Sequence[int] = ()) -> None:
    """Remove group `gid`'s namespaces (and the processes in them), veths and bridge."""
    for pid in extra_pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except OSError:
            pass
    for ns in namespaces():
        m = _NS_RE.match(ns)
        if m and m.group(1) + m.group(2) == gid:
            _kill_in(ns)
            _run("ip", "netns", "del", ns, check=False)   # takes its veth (and the peer) along
    for link in _links():
        m = _LINK_RE.match(link)
        if m and m.group(1) + m.group(2) == gid:
            _run("ip", "link", "del", link, check=False)


def sweep_stale() -> List[str]:
    """Remove leftovers of crashed owners (namespaces / links whose owner pid is dead); their gids."""
    gids = set()
    for name in namespaces():
        m = _NS_RE.match(name)
        if not pid_alive(int(m.group(1))):
            gids.add(m.group(1) + m.group(2))
    for name in _links():
        m = _LINK_RE.match(name)
        if not pid_alive(int(m.group(1))):
            gids.add(m.group(1) + m.group(2))
    for gid in sorted(gids):
        remove_group(gid)
    return sorted(gids)


def _tbf(mbps: float) -> List[str]:
    """tc arguments for a token bucket of `mbps` megabit/s (burst ~10 ms of traffic, queue ~50 ms)."""
    from .link import tbf_burst_bytes   # (here: the reaper runs this file as a script; the simulated link uses it too)
    return ["tbf", "rate", f"{int(mbps * 1e6)}bit", "burst", str(tbf_burst_bytes(mbps)), "latency", "50ms"]


class Host:
    """One host: its namespace, address, and the two ends of its link."""

    def __init__(self, index: int, name: str, ns: str, addr: str, veth: str, mbps: Optional[float]):
        self.index, self.name, self.ns, self.addr, self.veth, self.mbps = index, name, ns, addr, veth, mbps

    def exec_prefix(self) -> List[str]:
        """Prefix a command with this to run it inside the host."""
        return ["ip", "netns", "exec", self.ns]

    def __repr__(self):
        rate = f"{self.mbps:g} Mbit/s" if self.mbps else "unshaped"
        return f"<Host {self.name} {self.addr} ({self.ns}), {rate}>"


def _check_rate(mbps, knob: str) -> Optional[float]:
    from lab.errors import check
    if mbps is None:
        return None
    ok = isinstance(mbps, (int, float)) and not isinstance(mbps, bool) and math.isfinite(mbps) \
        and 0 < mbps <= MAX_MBPS
    check(ok, knob, f"a number of Mbit/s in (0, {MAX_MBPS:g}] or None (unshaped)", mbps)
    return float(mbps)


def check_rates(n: int, link_mbps, knob: str = "link_mbps") -> List[Optional[float]]:
    """One rate per host from a number, None or a list of n of them (ConfigError otherwise)."""
    from lab.errors import check
    if isinstance(link_mbps, (list, tuple)):
        check(len(link_mbps) == n, knob, f"a number or a list of {n} numbers (one per host)", list(link_mbps))
        return [_check_rate(m, f"{knob}[{i}]") for i, m in enumerate(link_mbps)]
    return [_check_rate(link_mbps, knob)] * n


class Hosts:
    """N hosts (network namespaces) on one private bridge, each link shaped; see the module doc."""

    def __init__(self, gid: str, subnet, bridge: str, hosts: List[Host], reaper=None, state: str = ""):
        self.gid, self.subnet, self.bridge, self.hosts = gid, subnet, bridge, hosts
        self.bridge_addr = str(subnet.network_address + 1)
        self._reaper, self._state = reaper, state
        self._watch: dict = {"pids": [], "lease": None, "grace": None}

    # -- making ---------------------------------------------------------------------------------
    @classmethod
    def create(cls, n: int, link_mbps=None, names: Optional[Sequence[str]] = None,
               reaper: bool = True) -> "Hosts":
        """Make `n` hosts with links of `link_mbps` Mbit/s (a number, one per host in a list, or None).

        Bad input raises ConfigError (one line) before anything is made; so does a machine where
        namespaces cannot be made (not root).
        """
        from lab.errors import ConfigError, check
        global _groups
        check(isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 64, "hosts", "an integer in [1, 64]", n)
        rates = check_rates(n, link_mbps)
        names = list(names) if names is not None else [f"h{i}" for i in range(n)]
        check(len(names) == n and all(isinstance(s, str) and _NAME_RE.match(s) for s in names), "names",
              f"{n} host names of 1-12 lowercase letters or digits", names)
        dup = sorted({s for s in names if names.count(s) > 1})
        check(not dup, "names", "distinct host names (a name clash)", dup[0] if dup else None)
        why = unavailable()
        if why:
            raise ConfigError("hosts", "0 on this machine: " + why, n)
        check(_groups < 26, "hosts", "at most 26 host groups per process (stop some)", _groups + 1)
        sweep_stale()
        gid = f"{os.getpid()}{chr(97 + _groups)}"
        existing = set(namespaces())
        clash = [f"{PREFIX}-{gid}-{s}" for s in names if f"{PREFIX}-{gid}-{s}" in existing]
        check(not clash, "names", "names no running namespace uses (a name clash)", clash[0] if clash else None)
        _groups += 1
        subnet = cls._free_subnet()
        bridge = f"{PREFIX}{gid}br"
        self = cls(gid, subnet, bridge, [])
        try:
            _run("ip", "link", "add", bridge, "type", "bridge")
            _run("ip", "addr", "add", f"{self.bridge_addr}/24", "dev", bridge)
            _run("ip", "link", "set", bridge, "up")
            for i, (name, mbps) in enumerate(zip(names, rates)):
                ns, veth, addr = f"{PREFIX}-{gid}-{name}", f"{PREFIX}{gid}v{i}", str(subnet.network_address + 10 + i)
                _run("ip", "netns", "add", ns)
                h = Host(i, name, ns, addr, veth, mbps)
                self.hosts.append(h)
                _run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
                _run("ip", "link", "set", veth, "master", bridge, "up")
                _run("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
                _run("ip", "-n", ns, "link", "set", "eth0", "up")
                _run("ip", "-n", ns, "link", "set", "lo", "up")
                if mbps:
                    self._shape(h, mbps, "add")
            if reaper:
                self._start_reaper()
        except BaseException as e:
            remove_group(gid)
            if isinstance(e, RuntimeError):
                raise ConfigError("hosts", f"makeable here, but {e}", n) from None
            raise
        return self

    @staticmethod
    def _free_subnet():
        used = set()
        for line in _run("ip", "-o", "-4", "addr", "show", check=False).stdout.splitlines():
            for tok in line.split():
                if "/" in tok:
                    try:
                        net = ipaddress.ip_interface(tok).network
                    except ValueError:
                        continue
                    if net.overlaps(NET):
                        used.add(net)
        nets = list(NET.subnets(new_prefix=24))
        start = os.getpid() % len(nets)
        for k in range(len(nets)):
            net = nets[(start + k) % len(nets)]
            if not any(net.overlaps(u) for u in used):
                return net
        raise RuntimeError("no free /24 left in 198.18.0.0/15")

    def _shape(self, h: Host, mbps: float, verb: str) -> None:
        _run("tc", "-n", h.ns, "qdisc", verb, "dev", "eth0", "root", *_tbf(mbps))    # the host's egress
        _run("tc", "qdisc", verb, "dev", h.veth, "root", *_tbf(mbps))               # the host's ingress

    # -- using ----------------------------------------------------------------------------------
    def __len__(self):
        return len(self.hosts)

    def __getitem__(self, i) -> Host:
        return self._host(i)

    def __iter__(self):
        return iter(self.hosts)

    def _host(self, host) -> Host:
        from lab.errors import check
        if isinstance(host, str):
            found = [h for h in self.hosts if h.name == host or h.ns == host]
            check(bool(found), "host", "one of " + ", ".join(h.name for h in self.hosts), host)
            return found[0]
        check(isinstance(host, int) and not isinstance(host, bool) and 0 <= host < len(self.hosts), "host",
              f"a host index in [0, {len(self.hosts) - 1}] or its name", host)
        return self.hosts[host]

    @property
    def rates(self) -> List[Optional[float]]:
        return [h.mbps for h in self.hosts]

    def set_rate(self, host, mbps) -> None:
        """Change host `host`'s link (index or name) to `mbps` Mbit/s at once (None: unshaped)."""
        h = self._host(host)
        mbps = _check_rate(mbps, "mbps")
        if mbps is None:
            if h.mbps:
                _run("tc", "-n", h.ns, "qdisc", "del", "dev", "eth0", "root")
                _run("tc", "qdisc", "del", "dev", h.veth, "root")
        else:
            self._shape(h, mbps, "replace")
        h.mbps = mbps

    def exists(self) -> bool:
        ours = [ns for ns in namespaces() if ns.startswith(f"{PREFIX}-{self.gid}-")]
        return len(ours) == len(self.hosts) > 0

    # -- cleaning up ------------------------------------------------------------------------------
    def watch(self, pids: Sequence[int] = (), lease: Optional[str] = None, grace_s: Optional[float] = None) -> None:
        """Tell the reaper about processes to end with the hosts (e.g. the controller) and a lease
        file: when it stays untouched for `grace_s` seconds, the hosts go (the cluster's watchdog)."""
        self._watch["pids"] = sorted(set(self._watch["pids"]) | {int(p) for p in pids})
        if lease is not None:
            self._watch.update(lease=str(lease), grace=float(grace_s or 120.0))
        if self._state:
            tmp = self._state + ".tmp"
            with open(tmp, "w") as f:
                json.dump(self._watch, f)
            os.replace(tmp, self._state)

    def _start_reaper(self) -> None:
        fd, self._state = tempfile.mkstemp(prefix=f"lab-hosts-{self.gid}-", suffix=".json")
        os.close(fd)
        self.watch()
        with open(os.devnull, "rb") as null_in, open(os.devnull, "wb") as null_out:
            self._reaper = subprocess.Popen(
                [sys.executable, "-I", "-S", os.path.abspath(__file__), "--reap", self.gid, str(os.getpid()), self._state],
                stdin=null_in, stdout=null_out, stderr=null_out, start_new_session=True, close_fds=True)

    def stop(self) -> None:
        """Remove every namespace, veth and the bridge (and end the processes running in them)."""
        if self._reaper is not None:
            try:
                self._reaper.kill()
                self._reaper.wait(5)
            except Exception:
                pass
            self._reaper = None
        remove_group(self.gid)
        if self._state:
            try:
                os.unlink(self._state)
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def __repr__(self):
        return f"<Hosts {self.gid}: {len(self.hosts)} on {self.bridge} {self.subnet}: {self.hosts}>"


def engine_transfer(nbytes: int, src: int = 0, dst: int = 1) -> float:
    """On every engine of a cluster: rank `src` sends `nbytes` to rank `dst` over the process group
    (one message, bounded by the group's timeout); returns the seconds from a barrier to the next."""
    import torch
    import torch.distributed as dist
    buf = torch.zeros(max(1, nbytes // 4))
    dist.barrier()
    t = time.perf_counter()
    if dist.get_rank() == src:
        dist.send(buf, dst)
    elif dist.get_rank() == dst:
        dist.recv(buf, src)
    dist.barrier()
    return time.perf_counter() - t


def link_bytes(h: "Host") -> dict:
    """The kernel's byte counters of host `h`'s link: sent (host egress) and received."""
    base = f"/sys/class/net/{h.veth}/statistics/"
    with open(base + "rx_bytes") as f_rx, open(base + "tx_bytes") as f_tx:
        return {"sent": int(f_rx.read()), "recv": int(f_tx.read())}   # the bridge side sees it mirrored


def _reap(gid: str, owner: int, state: str, every: float = 0.3) -> None:
    """The reaper: remove group `gid` once `owner` dies, or its lease goes stale, or the hosts are gone."""
    watch: dict = {}
    while True:
        time.sleep(every)
        try:
            with open(state) as f:
                watch = json.load(f)
        except (OSError, ValueError):
            pass
        stale = False
        if watch.get("lease"):
            try:
                stale = time.time() - os.path.getmtime(watch["lease"]) > float(watch.get("grace") or 120)
            except OSError:
                stale = True   # Cluster.stop removed it
        if not pid_alive(owner) or stale:
            remove_group(gid, watch.get("pids", ()))
            break
        if not any(ns.startswith(f"{PREFIX}-{gid}-") for ns in namespaces()):
            break   # stopped by its owner
    try:
        os.unlink(state)
    except OSError:
        pass


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "--reap":
    _reap(sys.argv[2], int(sys.argv[3]), sys.argv[4])
