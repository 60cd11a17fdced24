"""The communicator: every byte a worker sends goes through here, timed and accounted.

Strategies and compressors never call `torch.distributed` directly: they call `Comm`, which
(1) runs the collective on the cluster's process group, (2) charges the bytes each worker sends
and receives according to the collective's algorithm, (3) times it as communication (or, for
barriers, as waiting), and (4) if a simulated link is configured, makes the exchange last at least
the transfer time that link would need for the algorithm's bytes plus the transport's framing:
it sleeps what loopback did not already spend (a non-blocking transfer runs from when it was
issued) and records that separately as `sim_link_s` (simulated, never mixed with measured time).

Byte formulas (n workers, a payload of B bytes per worker), the standard costs of each algorithm:
    ring all-reduce        sent = recv = 2 (n-1)/n * B        in 2 (n-1) messages
    all-gather             sent = (n-1)/n * n*B = (n-1) B, recv = (n-1) B  (equal payloads; on gloo a
                           direct exchange, one round: `direct_all_gather`; a ring sends the same)
    broadcast (from root)  root sends (n-1) B, others receive B
    scatter (from root)    root sends (n-1) b of its n chunks of b bytes, others receive b  (n-1 messages)
    gather (to root)       others send b, root receives (n-1) b                            (1 message each)
    ring reduce-scatter    sent = recv = (n-1)/n * B            in n-1 messages (each keeps B/n, summed)
    point to point         sender sends B, receiver receives B
(reduce-scatter runs as a ring of isend/recv written here: gloo's own reduce_scatter is one
all-reduce per rank, and its reduce_scatter_tensor an all-reduce of everything, so neither would
send what the formula says.)

The transport adds its own bytes around each message; `framing_bytes` estimates them apart from
the algorithm's bytes: on gloo over TCP about 290 B per message and 147 B per barrier round
(measured against the kernel's TCP counters in tests/test_wire_bytes.py). Other backends: 0
(not modelled).

Two planes (`lab.devices`). A Comm is the worker's *data plane*: tensors on the worker's device
(`device`), on the cluster's group (NCCL when each worker owns a GPU, else gloo). `comm.control`
is its *control plane*: a gloo group on the CPU beside it for clocks, barriers and other small
CPU messages, charged to the same ledger. When workers share a GPU the data group is gloo, which
moves CUDA tensors only in all-reduce and broadcast: the other collectives are staged through host
memory here (copied to the CPU, run, copied back), charged the same bytes.

Device-check mode (`check=True`, or env LAB_DEVICE_CHECK=1; the test suite turns it on): a data
collective given a tensor off the worker's device, a control message that is not a small CPU
tensor, or a control plane that is the data group itself (with several workers) raises
`DeviceCheckError` instead of what NCCL would do on a GPU machine (refuse, or hang).
"""
from __future__ import annotations

import os
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import List, Optional

import torch
import torch.distributed as dist

from .errors import LabError
from .link import LinkConfig, TokenBucket
from .timing import clock_for


@dataclass
class Ledger:
    """What one worker spent communicating during one step (reset by the training loop)."""
    bytes_sent: int = 0
    bytes_recv: int = 0
    messages: int = 0
    comm_s: float = 0.0        # measured time inside collectives / sends
    overlap_s: float = 0.0     # time collectives were in flight while backward computed (hidden, not in comm_s)
    wait_s: float = 0.0        # measured time blocked waiting for other workers
    sim_link_s: float = 0.0    # SIMULATED transfer time charged by the link model
    raw_bytes: int = 0         # what the same exchange would carry uncompressed in fp32
    payload_bytes: int = 0     # what this worker handed to the collectives
    framing_bytes: int = 0     # the transport's own bytes around those messages (estimate, see above)

    def reset(self):
        for f in fields(self):
            setattr(self, f.name, f.default)

    def spent(self) -> dict:
        """The byte and message counters that are not zero: what a switch or a hand-over cost,
        carried into the next record (`lab.train`, `lab.elastic`)."""
        return {k: getattr(self, k) for k in SPENT if getattr(self, k)}

    def as_dict(self):
        return {f.name: getattr(self, f.name) for f in fields(self)}


FRAMING = {"gloo": (290, 147)}  # backend -> (bytes per message, bytes per barrier round)


def direct_all_gather(src: torch.Tensor, n: int, group=None) -> torch.Tensor:
    """Every worker's `src`, stacked by rank ((n, *src.shape)), by a direct exchange: each worker
    sends its block to each other worker at once (`all_to_all_single`), one round, where gloo's
    all-gather is a ring of n-1 rounds, each waiting for the one before. The same bytes and
    messages per worker, (n-1) B and n-1 each way; what it saves is the rounds, and with them the
    wake-ups a round costs each worker's threads: the compressed payloads gathered here are a few
    kB, where those dominate (as MPI gathers small messages in log n rounds, not a ring). On 2
    cores, 8 workers, a 6 kB block right after a step's compute: 11.5 ms by gloo's ring, 4.2 ms so
    (`scripts/host-probe.py --workers 8`, ring against a2a)."""
    flat = src.contiguous()
    if flat.dtype == torch.bool:   # (gloo's all-to-all has no bool: the same bytes as uint8)
        return direct_all_gather(flat.view(torch.uint8), n, group).view(torch.bool)
    out = torch.empty((n,) + tuple(flat.shape), dtype=flat.dtype, device=flat.device)
    dist.all_to_all_single(out, flat.unsqueeze(0).expand((n,) + tuple(flat.shape)).contiguous(), group=group)
    return out


TCP_MSS, FRAME_HEADERS = 1448, 66  # TCP payload per segment; Ethernet + IP + TCP (timestamps) per frame


SPENT = ("bytes_sent", "bytes_recv", "messages", "framing_bytes")


def add_counters(a: dict, b: dict) -> dict:
    """Counters summed key by key."""
    return {k: a.get(k, 0) + b.get(k, 0) for k in {**a, **b}}


def header_bytes(payload: int, messages: int = 1) -> float:
    """The frames' own bytes around `payload` bytes of TCP payload sent as `messages` messages: 66 B per
    segment (at least one per message), and a 66 B acknowledgement every second segment, which in a ring
    or a star leaves on the same link as the host's own data. (Checked against real tbf links in
    `python -m lab bench links`: fp32 sync's step took ~10% longer than a simulated link without them.)"""
    segments = max(messages, math.ceil(payload / TCP_MSS))
    return FRAME_HEADERS * (segments + segments / 2)


def nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


class DeviceCheckError(LabError, RuntimeError):
    """Device-check mode: a tensor on the wrong plane or device (what NCCL would refuse on a GPU)."""


CONTROL_MAX = 4096            # elements: a control message is small (clocks, sizes, flags)
CONTROL_GROUPS: dict = {}     # data group (None: the default group) -> its gloo control group


def register_control(data_group, control_group) -> None:
    """Record the control group made beside `data_group` (lab.worker.make_groups), so every Comm
    on that data group finds its control plane, even one made by hand (`Comm(rank, world)`)."""
    CONTROL_GROUPS[data_group] = control_group


def same_device(a: torch.device, b: torch.device) -> bool:
    """Same device type, and the same index where both name one ("cuda" matches "cuda:1")."""
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


def device_check_default() -> bool:
    """Device-check mode from the environment (LAB_DEVICE_CHECK=1)."""
    return os.environ.get("LAB_DEVICE_CHECK", "") not in ("", "0", "false", "False")


class Comm:
    """Timed, byte-accounted collectives for one worker.

    Args:
        rank, world: this worker's rank and the number of workers.
        group: the torch.distributed process group (None = the default group); `rank`, `world` and
            every src / dst here are ranks in that group (e.g. an engine group of `Cluster.split`).
        link: a simulated link; when active, each collective sleeps for its simulated time.
        device: the worker's device (default cpu): data tensors live there, and the clocks
            synchronise it at every boundary (lab.timing).
        control: the gloo control group (default: the one registered for `group`, else `group`).
        check: device-check mode (default: env LAB_DEVICE_CHECK).

    Example (on an engine, after the cluster set up the process group):
        >>> comm = Comm(rank, world, link=LinkConfig(bandwidth_mbps=10))
        >>> comm.all_reduce(flat_grad)  # in place, summed; comm.ledger holds the bytes
    """

    plane = "data"

    def __init__(self, rank: int, world: int, group=None, link: Optional[LinkConfig] = None, *,
                 device=None, control=None, check: Optional[bool] = None):
        self.rank, self.world, self.group = rank, world, group
        self.link = link or LinkConfig()
        self.bucket = TokenBucket()   # this worker's sending side of the simulated link
        self.ledger = Ledger()
        self.backend = str(dist.get_backend(group)) if dist.is_initialized() else "gloo"
        self.framing = FRAMING.get(self.backend, (0, 0))
        self.device = torch.device(device if device is not None else "cpu")
        self.clock = clock_for(self.device)
        self.check = device_check_default() if check is None else bool(check)
        # gloo moves CUDA tensors only in all-reduce / broadcast: the rest go through host memory
        self.staged = self.backend == "gloo" and self.device.type == "cuda"
        if control is None:
            control = CONTROL_GROUPS.get(group, group if group in CONTROL_GROUPS.values() else None)
        self.control = ControlComm(self, control if control is not None else group, separate=control is not None)

    def fresh(self) -> "Comm":
        """A new Comm on the same groups, device and link with its own ledger (e.g. for a server thread)."""
        return Comm(self.rank, self.world, group=self.group, link=self.link, device=self.device,
                    control=self.control.group if self.control.separate else None, check=self.check)

    # -- planes -------------------------------------------------------------------------------
    def _check(self, op: str, *tensors) -> None:
        """Device-check mode: every data tensor on the worker's device."""
        if not self.check:
            return
        for t in tensors:
            if t is not None and not same_device(t.device, self.device):
                raise DeviceCheckError(f"device check: {op} on the data plane got a tensor on {t.device}, but this "
                                       f"worker's device is {self.device} (small CPU messages go through comm.control)")

    def _host(self, t: torch.Tensor) -> torch.Tensor:
        """`t` as the data group can move it: a host copy of a CUDA tensor when staged, else `t`."""
        return t.cpu() if self.staged and t.is_cuda else t

    @property
    def data_plane(self) -> str:
        """The data plane in words ("nccl", "gloo, host-staged all-gather, ...", "gloo (cpu)")."""
        from .devices import data_plane
        return data_plane(self.backend, self.device)

    # -- accounting ---------------------------------------------------------------------------
    def _charge(self, sent: float, recv: float, messages: int, seconds: float, sim_bytes: float = None,
                simulate: bool = True):
        lg = self.ledger
        lg.bytes_sent += int(round(sent))
        lg.bytes_recv += int(round(recv))
        lg.messages += messages
        lg.framing_bytes += messages * self.framing[0]
        lg.comm_s += seconds
        if self.link.active and messages and simulate:
            sim = self.link_seconds(int(sim_bytes if sim_bytes is not None else sent), messages,
                                    start=time.perf_counter() - seconds)
            # The exchange takes at least the link's transfer time, and loopback has already spent
            # `seconds` of it: sleep the rest (slept in full on top, a per-layer compressor's twenty
            # small collectives were charged their loopback time twice: 0.57-0.75x real tbf links).
            extra = max(0.0, sim - seconds)
            time.sleep(extra)  # a simulated link really costs wall time, so time-to-accuracy shows it
            lg.sim_link_s += extra

    def link_seconds(self, nbytes: int, messages: int = 1, start: Optional[float] = None) -> float:
        """What the simulated link charges for `nbytes` of the algorithm's in `messages` messages given
        to it at `start` (`time.perf_counter()`, default now): the transport's framing travels too (a
        payload-light compressor would otherwise look faster than it is), and, over TCP (gloo), the
        frames' headers: a link's rate counts them. With a bandwidth, the link's token bucket
        (`LinkConfig.burst_kb`, lab.link.TokenBucket) passes what it holds at once, as a real
        shaped link does after a step's compute."""
        payload = nbytes + messages * self.framing[0]
        if self.framing[0]:
            payload += header_bytes(payload, messages)
        burst = self.link.burst_bytes()
        if not burst:
            return self.link.seconds(payload, messages)
        now = time.perf_counter() if start is None else start
        rate = self.link.bandwidth_mbps * 1e6 / 8
        return messages * self.link.latency_ms / 1000.0 + self.bucket.seconds(payload, now, rate, burst)

    def note_payload(self, payload: int, raw: int):
        """Record the bytes handed to collectives against the fp32 size they stand for."""
        self.ledger.payload_bytes += int(payload)
        self.ledger.raw_bytes += int(raw)

    # -- collectives --------------------------------------------------------------------------
    def all_reduce(self, t: torch.Tensor, op=dist.ReduceOp.SUM) -> torch.Tensor:
        """In-place all-reduce (ring cost)."""
        n = self.world
        self._check("all_reduce", t)
        t0 = self.clock.now()
        if n > 1:
            dist.all_reduce(t, op=op, group=self.group)
        b = 2 * (n - 1) / n * nbytes(t)
        self._charge(b, b, 2 * (n - 1), self.clock.now() - t0)
        return t

    def all_reduce_start(self, t: torch.Tensor, op=dist.ReduceOp.SUM) -> "Pending":
        """Start an in-place all-reduce and return at once (DDP's overlap: backward goes on meanwhile);
        `wait()` on the handle before reading `t`. Charged like `all_reduce` when started; the time
        blocked in `wait()` is comm_s, the time in flight before it overlap_s (hidden behind compute)."""
        n = self.world
        self._check("all_reduce", t)
        t0 = time.perf_counter()  # no device sync here: it would stall the backward pass it overlaps
        work = dist.all_reduce(t, op=op, group=self.group, async_op=True) if n > 1 else None
        b = 2 * (n - 1) / n * nbytes(t)
        self._charge(b, b, 2 * (n - 1), time.perf_counter() - t0, simulate=False)  # slept in wait()
        sim = self.link_seconds(int(b), 2 * (n - 1)) if self.link.active and n > 1 else 0.0
        return Pending(self, work, sim, started=time.perf_counter())

    def all_gather(self, t: torch.Tensor) -> List[torch.Tensor]:
        """All-gather equal-shaped tensors; returns one tensor per rank ((n-1) B each way, n-1
        messages). On gloo a direct exchange (`direct_all_gather`), elsewhere torch's all-gather."""
        n = self.world
        self._check("all_gather", t)
        t0 = self.clock.now()
        src = self._host(t.contiguous())
        if n > 1 and self.backend == "gloo":
            out = list(direct_all_gather(src, n, self.group).unbind(0))
        elif n > 1:
            out = [torch.empty_like(src) for _ in range(n)]
            dist.all_gather(out, src, group=self.group)
        else:
            out = [src.clone()]
        if src.device != t.device:
            out = [o.to(t.device) for o in out]
        b = (n - 1) * nbytes(t)
        self._charge(b, b, n - 1, self.clock.now() - t0)
        return out

    def broadcast(self, t: torch.Tensor, src: int) -> torch.Tensor:
        n = self.world
        self._check("broadcast", t)
        t0 = self.clock.now()
        if n > 1:
            dist.broadcast(t, group=self.group, group_src=src)
        b = nbytes(t)
        sent, recv = ((n - 1) * b, 0) if self.rank == src else (0, b)
        self._charge(sent, recv, (n - 1) if self.rank == src else 0, self.clock.now() - t0,
                     sim_bytes=sent if self.rank == src else b)
        return t

    def scatter(self, out: torch.Tensor, chunks: Optional[List[torch.Tensor]], src: int) -> torch.Tensor:
        """Rank `src` hands chunk r of its `chunks` (n tensors shaped like `out`) to rank r, into `out`.

        Charged: the root sends (n-1) b bytes in n-1 messages (its own chunk stays home), every
        other rank receives b, where b = `out`'s bytes. Other ranks pass `chunks=None`.
        """
        n = self.world
        self._check("scatter", out, *(chunks or ()))
        t0 = self.clock.now()
        if self.rank == src:
            check_chunks(chunks, out, n)
        if n > 1:
            into = self._host(out)
            dist.scatter(into, [self._host(c) for c in chunks] if self.rank == src else None, group=self.group,
                         group_src=src)
            if into is not out:
                out.copy_(into)
        else:
            out.copy_(chunks[0])
        b = nbytes(out)
        root = self.rank == src
        self._charge((n - 1) * b if root else 0, 0 if root else b, (n - 1) if root else 0,
                     self.clock.now() - t0, sim_bytes=(n - 1) * b if root else b)
        return out

    def gather(self, t: torch.Tensor, dst: int) -> Optional[List[torch.Tensor]]:
        """Every rank's `t` (equal shapes) collected on rank `dst`: the list by rank there, None elsewhere.

        Charged: each other rank sends b = `t`'s bytes in one message; the root receives (n-1) b.
        """
        n = self.world
        self._check("gather", t)
        t0 = self.clock.now()
        root = self.rank == dst
        src = self._host(t.contiguous())
        out = [torch.empty_like(src) for _ in range(n)] if root else None
        if n > 1:
            dist.gather(src, out, group=self.group, group_dst=dst)
        else:
            out[0].copy_(src)
        if root and src.device != t.device:
            out = [o.to(t.device) for o in out]
        b = nbytes(t)
        self._charge(0 if root else b, (n - 1) * b if root else 0, 0 if root else 1, self.clock.now() - t0)
        return out

    def reduce_scatter(self, t: torch.Tensor) -> torch.Tensor:
        """Sum `t` over the ranks and keep chunk `rank` of the flat sum: a ring of n-1 isend/recv steps.

        `t` is split into n nearly equal chunks of its flattened elements (lab.ring's chunks);
        rank r returns the sum of every rank's chunk r (a new tensor; `t` is left as it was).
        In step s each rank sends its running chunk (r-s-1) mod n to its right neighbour and adds
        the chunk (r-s-2) mod n arriving from its left, so after n-1 steps it holds chunk r summed.
        Charged what it really sends: (n-1) chunks, (n-1)/n * B when n divides the element count.
        """
        from .ring import _chunks
        n, rank = self.world, self.rank
        self._check("reduce_scatter", t)
        flat = self._host(t.detach().reshape(-1)).clone()
        spans = _chunks(flat.numel(), n)
        right, left = (rank + 1) % n, (rank - 1) % n
        t0 = self.clock.now()
        sent = recv = 0
        for s in range(n - 1):
            a, b = spans[(rank - s - 1) % n]
            req = dist.isend(flat[a:b].clone(), group=self.group, group_dst=right)
            c, d = spans[(rank - s - 2) % n]
            incoming = torch.empty_like(flat[c:d])
            dist.recv(incoming, group=self.group, group_src=left)
            req.wait()
            flat[c:d] += incoming
            sent += (b - a) * flat.element_size()
            recv += (d - c) * flat.element_size()
        a, b = spans[rank]
        self._charge(sent, recv, n - 1, self.clock.now() - t0)
        return flat[a:b].to(t.device, copy=True)

    def send(self, t: torch.Tensor, dst: int, tag: int = 0):
        self._check("send", t)
        t0 = self.clock.now()
        dist.send(self._host(t), group=self.group, tag=tag, group_dst=dst)
        self._charge(nbytes(t), 0, 1, self.clock.now() - t0)

    def recv(self, t: torch.Tensor, src: Optional[int] = None, tag: int = 0) -> int:
        """Receive into `t` (from any rank when src is None); returns the sender's rank."""
        self._check("recv", t)
        t0 = self.clock.now()
        into = self._host(t)
        who = dist.recv(into, group=self.group, tag=tag, group_src=src)
        if into is not t:
            t.copy_(into)
        # the receive is charged no simulated time: its sender already paid for the message
        self.ledger.bytes_recv += nbytes(t)
        self.ledger.comm_s += self.clock.now() - t0
        return dist.get_group_rank(self.group, who) if self.group is not None else who  # torch answers global ranks

    def isend(self, t: torch.Tensor, dst: int, tag: int = 0) -> "Pending":
        """Start sending `t` to `dst` and return at once; `wait()` on the handle before reusing `t`.

        Charged like `send` (bytes, one message, framing) when issued; the time spent issuing
        and in `wait()` goes to comm_s, and a simulated link's time is slept in `wait()` (the
        sender pays for the message, as with `send`).
        """
        self._check("isend", t)
        t0 = self.clock.now()
        host = self._host(t)  # (staged: the host copy stays alive in the handle until wait())
        work = dist.isend(host, group=self.group, tag=tag, group_dst=dst)
        self._charge(nbytes(t), 0, 1, self.clock.now() - t0, simulate=False)  # slept in wait()
        sim = self.link_seconds(nbytes(t), 1) if self.link.active else 0.0
        return Pending(self, work, sim, keep=host)

    def irecv(self, t: torch.Tensor, src: int, tag: int = 0) -> "Pending":
        """Start receiving into `t` from `src`; read `t` only after `wait()` on the handle.

        Charged like `recv` (bytes received, no simulated time: the sender pays for it).
        """
        self._check("irecv", t)
        t0 = self.clock.now()
        into = self._host(t)
        work = dist.irecv(into, group=self.group, tag=tag, group_src=src)
        self.ledger.bytes_recv += nbytes(t)
        self.ledger.comm_s += self.clock.now() - t0
        return Pending(self, work, 0.0, keep=into, into=t if into is not t else None)

    def barrier(self):
        """Wait for every worker: counted as waiting, not communication."""
        with self.waiting():
            if self.world > 1:  # on the control plane: a CPU-only gloo barrier, whatever the data group
                dist.barrier(group=self.control.group)
                self.ledger.framing_bytes += self.control.framing[1] * (self.world - 1).bit_length()

    @contextmanager
    def waiting(self):
        """Count the time spent in the block as waiting for other workers."""
        t0 = self.clock.now()  # (on CUDA: after this worker's own queued kernels, which are compute)
        try:
            yield
        finally:
            self.ledger.wait_s += self.clock.now() - t0


def check_chunks(chunks, out: torch.Tensor, n: int) -> None:
    """The root's scatter input: n tensors shaped like `out` (a one-line ConfigError otherwise)."""
    from .errors import check
    check(chunks is not None and len(chunks) == n, "chunks", f"a list of {n} tensors (one per rank) on the root",
          None if chunks is None else f"{len(chunks)} tensors")
    check(all(c.shape == out.shape and c.dtype == out.dtype for c in chunks), "chunks",
          f"tensors of out's shape {tuple(out.shape)} and dtype {out.dtype}", [tuple(c.shape) for c in chunks])


class Pending:
    """A non-blocking send or receive in flight (`Comm.isend` / `Comm.irecv`)."""

    def __init__(self, comm: Comm, work, sim_s: float, keep=None, into=None, started: Optional[float] = None):
        self.comm, self.work, self.sim_s, self.done = comm, work, sim_s, False
        self.issued = time.perf_counter()   # a simulated link's transfer runs from here (while the caller computes)
        self.started = started   # an overlapped collective: when it was started (lab.strategies.overlap)
        self.keep, self.into = keep, into   # host staging: the host tensor, and where it lands after wait

    def wait(self) -> None:
        """Block until the transfer completed (timed as comm_s; a simulated link's time is slept here)."""
        if self.done:
            return
        t0 = self.comm.clock.now()
        if self.started is not None:
            self.comm.ledger.overlap_s += max(0.0, t0 - self.started)
        if self.work is not None:
            self.work.wait()
        if self.into is not None:
            self.into.copy_(self.keep)
        lg = self.comm.ledger
        lg.comm_s += self.comm.clock.now() - t0
        if self.sim_s:  # the transfer began when it was issued: only what is left of it is slept
            extra = max(0.0, self.issued + self.sim_s - time.perf_counter())
            time.sleep(extra)
            lg.sim_link_s += extra
        self.done = True


class ControlComm(Comm):
    """A Comm's control plane (`comm.control`): small CPU tensors on the gloo control group.

    Clocks, flags and sizes go here, never through the data group (an NCCL group refuses CPU
    tensors). It shares its parent's ledger and link: control bytes are on the wire too.
    """
    plane = "control"

    def __init__(self, parent: Comm, group, separate: bool):  # (no Comm.__init__: it shares the parent's state)
        self.parent, self.rank, self.world, self.group, self.separate = parent, parent.rank, parent.world, group, separate
        self.backend = str(dist.get_backend(group)) if dist.is_initialized() else "gloo"
        self.framing = FRAMING.get(self.backend, (0, 0))
        self.device, self.clock, self.staged = torch.device("cpu"), clock_for("cpu"), False
        self.control = self

    ledger = property(lambda self: self.parent.ledger, lambda self, v: setattr(self.parent, "ledger", v))
    link = property(lambda self: self.parent.link, lambda self, v: setattr(self.parent, "link", v))
    bucket = property(lambda self: self.parent.bucket)   # one link: the control plane's bytes share it
    check = property(lambda self: self.parent.check)

    def fresh(self) -> "Comm":
        return self.parent.fresh().control

    def _check(self, op: str, *tensors) -> None:
        """Device-check mode: a control message is a small CPU tensor, on a group apart from the data's."""
        if not self.check:
            return
        if self.world > 1 and not self.separate:
            raise DeviceCheckError(f"device check: {op} on comm.control would run on the data group (no control "
                                   f"group was made beside it: lab.worker.make_groups)")
        for t in tensors:
            if t is not None and (t.device.type != "cpu" or t.numel() > CONTROL_MAX):
                raise DeviceCheckError(f"device check: {op} on the control plane takes small CPU tensors (<= "
                                       f"{CONTROL_MAX} elements), got {t.numel()} on {t.device} (payloads go "
                                       f"through the data plane)")
