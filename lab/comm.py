"""The communicator: every byte a worker sends goes through here, timed and accounted.

Strategies and compressors never call `torch.distributed` directly: they call `Comm`, which
(1) runs the collective on the cluster's process group, (2) charges the bytes each worker sends
and receives according to the collective's algorithm, (3) times it as communication (or, for
barriers, as waiting), and (4) if a simulated link is configured, sleeps for the transfer time
that link would need for the algorithm's bytes plus the transport's framing, and records it
separately as `sim_link_s` (simulated, never mixed with measured time).

Byte formulas (n workers, a payload of B bytes per worker), the standard costs of each algorithm:
    ring all-reduce        sent = recv = 2 (n-1)/n * B        in 2 (n-1) messages
    ring all-gather        sent = (n-1)/n * n*B = (n-1) B, recv = (n-1) B  (equal payloads)
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
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import List, Optional

import torch
import torch.distributed as dist

from .link import LinkConfig


@dataclass
class Ledger:
    """What one worker spent communicating during one step (reset by the training loop)."""
    bytes_sent: int = 0
    bytes_recv: int = 0
    messages: int = 0
    comm_s: float = 0.0        # measured time inside collectives / sends
    wait_s: float = 0.0        # measured time blocked waiting for other workers
    sim_link_s: float = 0.0    # SIMULATED transfer time charged by the link model
    raw_bytes: int = 0         # what the same exchange would carry uncompressed in fp32
    payload_bytes: int = 0     # what this worker handed to the collectives
    framing_bytes: int = 0     # the transport's own bytes around those messages (estimate, see above)

    def reset(self):
        for f in fields(self):
            setattr(self, f.name, f.default)

    def as_dict(self):
        return {f.name: getattr(self, f.name) for f in fields(self)}


FRAMING = {"gloo": (290, 147)}  # backend -> (bytes per message, bytes per barrier round)


def nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


class Comm:
    """Timed, byte-accounted collectives for one worker.

    Args:
        rank, world: this worker's rank and the number of workers.
        group: the torch.distributed process group (None = the default group); `rank`, `world` and
            every src / dst here are ranks in that group (e.g. an engine group of `Cluster.split`).
        link: a simulated link; when active, each collective sleeps for its simulated time.

    Example (on an engine, after the cluster set up the process group):
        >>> comm = Comm(rank, world, link=LinkConfig(bandwidth_mbps=10))
        >>> comm.all_reduce(flat_grad)  # in place, summed; comm.ledger holds the bytes
    """

    def __init__(self, rank: int, world: int, group=None, link: Optional[LinkConfig] = None):
        self.rank, self.world, self.group = rank, world, group
        self.link = link or LinkConfig()
        self.ledger = Ledger()
        backend = dist.get_backend(group) if dist.is_initialized() else "gloo"
        self.framing = FRAMING.get(str(backend), (0, 0))

    def fresh(self) -> "Comm":
        """A new Comm on the same group and link with its own ledger (e.g. for a server thread)."""
        return Comm(self.rank, self.world, group=self.group, link=self.link)

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
            sim = self.link_seconds(int(sim_bytes if sim_bytes is not None else sent), messages)
            time.sleep(sim)  # a simulated link really costs wall time, so time-to-accuracy shows it
            lg.sim_link_s += sim

    def link_seconds(self, nbytes: int, messages: int = 1) -> float:
        """What the simulated link charges for `nbytes` of the algorithm's in `messages` messages: the
        transport's framing travels too (a payload-light compressor would otherwise look faster than it is)."""
        return self.link.seconds(nbytes + messages * self.framing[0], messages)

    def note_payload(self, payload: int, raw: int):
        """Record the bytes handed to collectives against the fp32 size they stand for."""
        self.ledger.payload_bytes += int(payload)
        self.ledger.raw_bytes += int(raw)

    # -- collectives --------------------------------------------------------------------------
    def all_reduce(self, t: torch.Tensor, op=dist.ReduceOp.SUM) -> torch.Tensor:
        """In-place all-reduce (ring cost)."""
        n = self.world
        t0 = time.perf_counter()
        if n > 1:
            dist.all_reduce(t, op=op, group=self.group)
        b = 2 * (n - 1) / n * nbytes(t)
        self._charge(b, b, 2 * (n - 1), time.perf_counter() - t0)
        return t

    def all_gather(self, t: torch.Tensor) -> List[torch.Tensor]:
        """All-gather equal-shaped tensors; returns one tensor per rank (ring cost)."""
        n = self.world
        t0 = time.perf_counter()
        out = [torch.empty_like(t) for _ in range(n)]
        if n > 1:
            dist.all_gather(out, t.contiguous(), group=self.group)
        else:
            out[0].copy_(t)
        b = (n - 1) * nbytes(t)
        self._charge(b, b, n - 1, time.perf_counter() - t0)
        return out

    def broadcast(self, t: torch.Tensor, src: int) -> torch.Tensor:
        n = self.world
        t0 = time.perf_counter()
        if n > 1:
            dist.broadcast(t, group=self.group, group_src=src)
        b = nbytes(t)
        sent, recv = ((n - 1) * b, 0) if self.rank == src else (0, b)
        self._charge(sent, recv, (n - 1) if self.rank == src else 0, time.perf_counter() - t0,
                     sim_bytes=sent if self.rank == src else b)
        return t

    def scatter(self, out: torch.Tensor, chunks: Optional[List[torch.Tensor]], src: int) -> torch.Tensor:
        """Rank `src` hands chunk r of its `chunks` (n tensors shaped like `out`) to rank r, into `out`.

        Charged: the root sends (n-1) b bytes in n-1 messages (its own chunk stays home), every
        other rank receives b, where b = `out`'s bytes. Other ranks pass `chunks=None`.
        """
        n = self.world
        t0 = time.perf_counter()
        if self.rank == src:
            check_chunks(chunks, out, n)
        if n > 1:
            dist.scatter(out, list(chunks) if self.rank == src else None, group=self.group, group_src=src)
        else:
            out.copy_(chunks[0])
        b = nbytes(out)
        root = self.rank == src
        self._charge((n - 1) * b if root else 0, 0 if root else b, (n - 1) if root else 0,
                     time.perf_counter() - t0, sim_bytes=(n - 1) * b if root else b)
        return out

    def gather(self, t: torch.Tensor, dst: int) -> Optional[List[torch.Tensor]]:
        """Every rank's `t` (equal shapes) collected on rank `dst`: the list by rank there, None elsewhere.

        Charged: each other rank sends b = `t`'s bytes in one message; the root receives (n-1) b.
        """
        n = self.world
        t0 = time.perf_counter()
        root = self.rank == dst
        out = [torch.empty_like(t) for _ in range(n)] if root else None
        if n > 1:
            dist.gather(t.contiguous(), out, group=self.group, group_dst=dst)
        else:
            out[0].copy_(t)
        b = nbytes(t)
        self._charge(0 if root else b, (n - 1) * b if root else 0, 0 if root else 1, time.perf_counter() - t0)
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
        flat = t.detach().reshape(-1).clone()
        spans = _chunks(flat.numel(), n)
        right, left = (rank + 1) % n, (rank - 1) % n
        t0 = time.perf_counter()
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
        self._charge(sent, recv, n - 1, time.perf_counter() - t0)
        return flat[a:b].clone()

    def send(self, t: torch.Tensor, dst: int, tag: int = 0):
        t0 = time.perf_counter()
        dist.send(t, group=self.group, tag=tag, group_dst=dst)
        self._charge(nbytes(t), 0, 1, time.perf_counter() - t0)

    def recv(self, t: torch.Tensor, src: Optional[int] = None, tag: int = 0) -> int:
        """Receive into `t` (from any rank when src is None); returns the sender's rank."""
        t0 = time.perf_counter()
        who = dist.recv(t, group=self.group, tag=tag, group_src=src)
        # the receive is charged no simulated time: its sender already paid for the message
        self.ledger.bytes_recv += nbytes(t)
        self.ledger.comm_s += time.perf_counter() - t0
        return dist.get_group_rank(self.group, who) if self.group is not None else who  # torch answers global ranks

    def isend(self, t: torch.Tensor, dst: int, tag: int = 0) -> "Pending":
        """Start sending `t` to `dst` and return at once; `wait()` on the handle before reusing `t`.

        Charged like `send` (bytes, one message, framing) when issued; the time spent issuing
        and in `wait()` goes to comm_s, and a simulated link's time is slept in `wait()` (the
        sender pays for the message, as with `send`).
        """
        t0 = time.perf_counter()
        work = dist.isend(t, group=self.group, tag=tag, group_dst=dst)
        self._charge(nbytes(t), 0, 1, time.perf_counter() - t0, simulate=False)  # slept in wait()
        sim = self.link_seconds(nbytes(t), 1) if self.link.active else 0.0
        return Pending(self, work, sim)

    def irecv(self, t: torch.Tensor, src: int, tag: int = 0) -> "Pending":
        """Start receiving into `t` from `src`; read `t` only after `wait()` on the handle.

        Charged like `recv` (bytes received, no simulated time: the sender pays for it).
        """
        t0 = time.perf_counter()
        work = dist.irecv(t, group=self.group, tag=tag, group_src=src)
        self.ledger.bytes_recv += nbytes(t)
        self.ledger.comm_s += time.perf_counter() - t0
        return Pending(self, work, 0.0)

    def barrier(self):
        """Wait for every worker: counted as waiting, not communication."""
        with self.waiting():
            if self.world > 1:
                dist.barrier(group=self.group)
                self.ledger.framing_bytes += self.framing[1] * (self.world - 1).bit_length()

    @contextmanager
    def waiting(self):
        """Count the time spent in the block as waiting for other workers."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.ledger.wait_s += time.perf_counter() - t0


def check_chunks(chunks, out: torch.Tensor, n: int) -> None:
    """The root's scatter input: n tensors shaped like `out` (a one-line ConfigError otherwise)."""
    from .errors import check
    check(chunks is not None and len(chunks) == n, "chunks", f"a list of {n} tensors (one per rank) on the root",
          None if chunks is None else f"{len(chunks)} tensors")
    check(all(c.shape == out.shape and c.dtype == out.dtype for c in chunks), "chunks",
          f"tensors of out's shape {tuple(out.shape)} and dtype {out.dtype}", [tuple(c.shape) for c in chunks])


class Pending:
    """A non-blocking send or receive in flight (`Comm.isend` / `Comm.irecv`)."""

    def __init__(self, comm: Comm, work, sim_s: float):
        self.comm, self.work, self.sim_s, self.done = comm, work, sim_s, False

    def wait(self) -> None:
        """Block until the transfer completed (timed as comm_s; a simulated link's time is slept here)."""
        if self.done:
            return
        t0 = time.perf_counter()
        self.work.wait()
        lg = self.comm.ledger
        lg.comm_s += time.perf_counter() - t0
        if self.sim_s:
            time.sleep(self.sim_s)
            lg.sim_link_s += self.sim_s
        self.done = True
