"""The kernel's own count of the bytes the workers put on the wire: per-socket TCP counters.

The ledger (`lab.comm`) says what the algorithms send plus an estimate of the transport's framing;
this module reads what the kernel says went out, so the two can be held side by side (chapter 07b,
tests/test_wire_bytes.py, tests/test_hosts_wire.py).

Interface counters are no use for that on one machine (loopback also carries ipyparallel's
messages and every other process's) nor on the hosts' links (the engines' ipyparallel traffic
to the controller shares them). So this reads `ss -tin` (`tcp_info`'s `bytes_acked`, the
application bytes the peer acknowledged, and `bytes_received`) per established socket and keeps
the workers' gloo pairs only: sockets whose both ends belong to workers, minus the rendezvous
store's connections (rank 0's store port). On loopback "belongs to a worker" is the owning
process (`ss -p`); on hosts it is the address (each host's namespace, `ss -N`), since the
controller sits on the bridge's own address.

Needs `ss` from iproute2 and Linux >= 4.1; `why_not()` says in one line what is missing.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from typing import Dict, Iterable, Optional, Tuple

Socket = Tuple[str, str]       # (local "addr:port", peer "addr:port")
_ENDPOINT = re.compile(r"^(.*):(\d+)$")


def split(endpoint: str) -> Tuple[str, int]:
    """'198.18.3.10:4242' or '[::1]:80' -> (address, port)."""
    host, port = _ENDPOINT.match(endpoint).groups()
    return host.strip("[]"), int(port)


def why_not() -> Optional[str]:
    """None when per-socket counters can be read here; else one line saying what to install."""
    if shutil.which("ss") is None:
        return "needs `ss` (iproute2) to read per-socket TCP byte counters: apt-get install iproute2"
    return None


def tcp_sockets(pids: Optional[Iterable[int]] = None, ns: Optional[str] = None) -> Dict[Socket, dict]:
    """{(local, peer): {"pid", "acked", "received"}} for the established TCP sockets of processes
    `pids` (None: every process; pid is then None) in network namespace `ns` (None: this one)."""
    cmd = ["ss", "-tinH"] + (["-p"] if pids is not None else []) + (["-N", ns] if ns else []) + ["state", "established"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    pids = set(pids) if pids is not None else None
    socks, cur = {}, None
    for line in out.splitlines():
        if not line.startswith((" ", "\t")):  # a socket line: Recv-Q Send-Q Local Peer [users:(...)]
            cur = None
            parts = line.split()
            if len(parts) < 4:
                continue
            m = re.search(r"pid=(\d+)", line)
            if pids is not None and (not m or int(m.group(1)) not in pids):
                continue
            cur = (parts[2], parts[3])
            socks[cur] = {"pid": int(m.group(1)) if m else None, "acked": 0, "received": 0}
        elif cur is not None:  # the info line under it
            for key, field in (("acked", "bytes_acked"), ("received", "bytes_received")):
                m = re.search(rf"\b{field}:(\d+)", line)
                if m:
                    socks[cur][key] = int(m.group(1))
    return socks


def worker_pairs(socks: Dict[Socket, dict], store_port: int, addrs: Optional[Iterable[str]] = None) -> Dict[Socket, dict]:
    """The workers' gloo sockets among `socks`: both ends a worker's (by address when `addrs` is
    given, else both ends among the sockets listed, i.e. owned by the processes asked for), and
    neither end the rendezvous store's port."""
    if addrs is not None:
        addrs = set(addrs)
        mine = lambda k: split(k[0])[0] in addrs and split(k[1])[0] in addrs  # noqa: E731
    else:
        local_ends = {local for local, _ in socks}
        mine = lambda k: k[1] in local_ends  # noqa: E731
    return {k: v for k, v in socks.items()
            if mine(k) and store_port not in (split(k[0])[1], split(k[1])[1])}


def totals(socks: Dict[Socket, dict]) -> dict:
    return {"sent": sum(v["acked"] for v in socks.values()), "received": sum(v["received"] for v in socks.values()),
            "sockets": len(socks)}


def delta(before: Dict[Socket, dict], after: Dict[Socket, dict], key: str) -> int:
    """Growth of counter `key` ("acked" / "received") summed over the sockets in `after` (new ones from 0)."""
    return sum(v[key] - before.get(k, {}).get(key, 0) for k, v in after.items())


class WireMeter:
    """The kernel's count of the bytes the workers' gloo sockets sent between `start()` and `stop()`.

    Example (a cluster on hosts; on loopback it reads the engines' own sockets):
        >>> meter = WireMeter.of(cluster).start()
        >>> run = cluster.train(cfg).wait()
        >>> meter.stop()        # {"sent": ..., "received": ..., "sockets": ...}
    """

    def __init__(self, store_port: int, pids=None, namespaces=None, addrs=None):
        self.store_port, self.pids, self.namespaces, self.addrs = store_port, pids, namespaces, addrs
        self._before: Dict[Socket, dict] = {}

    @classmethod
    def of(cls, cluster) -> "WireMeter":
        port = cluster.call(0, "store_port")
        if getattr(cluster, "net", None) is not None:
            return cls(port, namespaces=[h.ns for h in cluster.net], addrs=[h.addr for h in cluster.net])
        return cls(port, pids=set(cluster.pids))

    def read(self) -> Dict[Socket, dict]:
        if self.namespaces is None:
            return worker_pairs(tcp_sockets(self.pids), self.store_port)
        socks = {}
        for ns in self.namespaces:
            socks.update({(ns,) + k: v for k, v in worker_pairs(tcp_sockets(ns=ns), self.store_port, self.addrs).items()})
        return socks

    def start(self) -> "WireMeter":
        self._before = self.read()
        return self

    def stop(self) -> dict:
        after = self.read()
        return {"sent": delta(self._before, after, "acked"), "received": delta(self._before, after, "received"),
                "sockets": len(after)}
