"""`async`: an asynchronous parameter server, Downpour / Hogwild style (chapter 05).

No barrier: whenever a worker has a gradient it pushes it to the server, which applies it at
once (scaled by 1/n, so a round of n pushes moves as far as one `sync` step) and answers with
its current parameters. Fast workers therefore never wait for slow ones, at a price: a gradient
was computed on parameters that other workers have updated since. Each applied update records
that **staleness**: the number of server updates between the worker's read and its push.

How it runs: the server (`lab.strategies.server`) is a thread on rank 0's engine, started in
`attach` and stopped in `detach`; rank 0's own worker talks to it in-process. Other workers
announce each message in the cluster's store (`lab.strategies.signals`), then send the gradient
point to point through `ctx.comm` (timed and byte-accounted) and receive the reply. The server
thread is the only user of the process group on rank 0 while it runs.

No hang: every wait is on the store with a short timeout, between which the thread asks
`ctx.aborted()`. `detach` drains: each worker announces it is done, the server finishes every
message before those, then rank 0 broadcasts the server's parameters and optimizer state.

Extending it (as `ssp` does): a step is `before_push()`, the push and reply (`exchange`),
`after_push(lag)` (which may pull again and returns the lag the next step computes on), then
`step_info(...)`; override those hooks, not `step`.
"""
from __future__ import annotations

from typing import Optional

import torch

from . import strategy
from .averaging import broadcast_state, unpack_state
from .base import StepInfo, Strategy
from .buckets import flat_grads, load_flat, numel
from .server import META, TAG, Server, ServerDown, Serving
from .signals import join, namespace, store_client, wait_keys


@strategy("async")
class AsyncPS(Strategy):
    """Asynchronous parameter server: push, get the newest parameters back, never wait for peers."""
    kind = "server"  # gradients go point to point to a server (compressors: lab.compression.wire)
    equals_sync = None     # with two or more workers, pushes interleave as threads happen to run
    deterministic = False
    hosted_server = True   # the server thread's ledger is its own node (server_bytes_* in rank 0's records)
    own_pace = True        # nothing inside a step waits for another worker's steps

    def attach(self, model, optimizer):
        super().attach(model, optimizer)
        ctx, ps = self.ctx, self.params()
        n = numel(ps)
        self.grad = torch.zeros(n, dtype=ps[0].dtype, device=ps[0].device)
        self.reply = torch.zeros(n + META, dtype=ps[0].dtype, device=ps[0].device)
        # with a compressor, gradients travel as packed bytes (lab.compression.wire)
        self.codec = ctx.compression.wire(self.grad, self.name)
        self.ns = namespace(ctx, self.name)
        self.store = store_client(ctx, "worker")
        self.server: Optional[Server] = None      # rank 0 only
        # an elastic run's standby (rank 1): the server's optimizer state as of this worker's last read
        # (its parameters are the model's own then), see lab.strategies.server
        self.standby = ctx.elastic and ctx.world > 1
        self.copy: Optional[dict] = None
        self.serving: Optional[Serving] = None    # rank 0 only, with two or more workers
        self.next_lag = 0          # clock lag of the parameters the next step computes on
        self.steps = 0             # this worker's steps since attach (its clock)
        self.version_read = 0      # the server's version of the parameters this worker holds
        self.reported = (0, 0, 0)  # the server's bytes (sent, received, framing) already put in a record
        self.finishing = False     # this worker announced it is done (`finish`)
        if ctx.rank == 0:
            self.server = Server(ps, optimizer, ctx.world, 1.0 / ctx.world, standby=self.standby)
            if ctx.world > 1:
                self.serving = Serving(ctx, self.server, self.ns, self.codec, self.grad, self.reply).start()

    # -- a worker's side --------------------------------------------------------------------
    def announce(self, kind: str) -> None:
        """Tell the server a message comes: "push", "pull" or "done"."""
        seq = self.store.add(f"{self.ns}/n", 1)
        self.store.set(f"{self.ns}/m/{seq}", f"{kind} {self.ctx.rank}")

    def exchange(self, push: bool):
        """Push the gradient (or only ask) and load the server's parameters: (staleness, lag)."""
        ctx, comm, ps = self.ctx, self.ctx.comm, self.params()
        if push:
            flat_grads(ps, self.grad)
            mine = self.codec.encode(self.grad) if self.codec else self.grad
            comm.note_payload(mine.numel() * mine.element_size(), self.grad.numel() * 4)
        state = None   # the server's optimizer state (the standby's replies)
        if ctx.rank == 0:  # in-process with the server: no bytes travel
            self.check_server()
            staleness = self.server.push(0, self.codec.decode(mine) if self.codec else mine) if push else 0
            lag, _ = self.server.read_into(0, self.reply)
        else:
            self.announce("push" if push else "pull")
            if push:
                comm.send(mine, 0, tag=TAG)
            comm.recv(self.reply, 0, tag=TAG)
            staleness, lag = int(self.reply[-3].item()), int(self.reply[-2].item())
            if self.reply[-4].item():   # the standby: the server's optimizer state of the same moment
                size = torch.zeros(1, dtype=torch.int64, device=self.reply.device)
                comm.recv(size, 0, tag=TAG)
                state = torch.empty(int(size.item()), dtype=torch.uint8, device=self.reply.device)
                comm.recv(state, 0, tag=TAG)
                state = unpack_state(state)
        load_flat(ps, self.reply[:-META])
        self.version_read = int(self.reply[-1].item())
        if state is not None:
            self.copy = state   # (set last: it always goes with the parameters just loaded)
        return staleness, lag

    def finish(self) -> None:
        """Tell the server this worker is done (once per attach); rank 0's own worker has nothing to say."""
        if self.ctx.rank != 0 and not self.finishing:
            self.announce("done")
        self.finishing = True

    def finished(self) -> bool:
        """Rank 0: the server thread has answered every other worker's `done`; the others: rank 0 said so."""
        if self.ctx.rank == 0:
            return self.serving is None or not self.serving.thread.is_alive()
        return self.store.check([f"{self.ns}/final"])

    def check_server(self) -> None:
        if self.serving is not None and self.serving.error:
            raise ServerDown(f"the parameter server on rank 0 failed: {self.serving.error}")

    def abandon(self) -> None:
        """The group broke (an elastic run re-forms): stop the server thread, keep the server's state."""
        if self.serving is not None:
            self.serving.stop.set()
            self.serving.thread.join(5.0)

    def server_bytes(self) -> dict:
        """The server's bytes since they were last reported (rank 0 with a server thread)."""
        if self.serving is None:
            return {}
        lg = self.serving.comm.ledger
        now = (lg.bytes_sent, lg.bytes_recv, lg.framing_bytes)
        sent, recv, framing = (a - b for a, b in zip(now, self.reported))
        self.reported = now
        return {"server_bytes_sent": sent, "server_bytes_recv": recv, "server_framing_bytes": framing}

    def unreported(self) -> dict:
        return {k: v for k, v in self.server_bytes().items() if v}

    # -- one step, through hooks ------------------------------------------------------------
    def before_push(self) -> None:
        """Called before the push of this worker's step `self.steps` (ssp waits here)."""

    def after_push(self, lag: int) -> int:
        """Called after the push (`self.steps` already counts it) with the reply's clock lag;
        returns the lag of the parameters the next step computes on (ssp may pull again)."""
        return lag

    def step_info(self, staleness_updates: int, used_lag: int) -> StepInfo:
        """The step's report: `staleness_updates` server updates between read and push; `used_lag`
        the clock lag of the parameters this step computed on."""
        return StepInfo(staleness=staleness_updates, extra={"clock_lag": used_lag, **self.server_bytes()})

    def step(self, step: int) -> StepInfo:
        used_lag = self.next_lag
        self.before_push()
        staleness, lag = self.exchange(push=True)
        self.steps += 1
        self.next_lag = self.after_push(lag)
        return self.step_info(staleness, used_lag)

    # -- state ------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Rank 0: the server's parameters, optimizer state, version and clocks. Others: nothing."""
        return {"server": self.server.state_dict()} if self.server is not None else {}

    def load_state_dict(self, d: dict) -> None:
        if self.server is not None and d.get("server"):
            self.server.load_state_dict(d["server"])

    def traffic(self, rank, world, param_bytes, itemsize=4):
        """A worker pushes B and gets B + META numbers back; rank 0's own worker talks in-process
        (its server thread's bytes are reported apart, as server_bytes_*)."""
        if rank == 0 or world == 1:
            return 0, 0
        return param_bytes, param_bytes + META * itemsize

    def detach(self):
        ctx, comm = self.ctx, self.ctx.comm
        if ctx.rank == 0:
            if self.serving is not None:
                with comm.waiting():  # the server drains every message sent before each worker's `done`
                    join(self.serving.thread, ctx, self.serving.stop)
            self.check_server()
            self.server.state_into(self.params(), self.optimizer)
            if ctx.world == 1:
                return
            self.store.set(f"{self.ns}/final", "1")
        else:
            self.finish()
            with comm.waiting():  # a fast worker may wait here for the stragglers to finish
                wait_keys(self.store, [f"{self.ns}/final"], ctx)
        broadcast_state(comm, self.params(), self.optimizer, src=0)
