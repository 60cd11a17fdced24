"""The engine side: what each ipyparallel engine holds and the functions the notebook calls on it.

The notebook never runs training in its own process: `lab.cluster` calls `setup` once per
engine (device, threads, one torch.distributed process group for the cluster's life), and
`lab.runs.Run` calls `start_run` (returns at once: training goes on in a background thread),
then `fetch` to stream records, `propose` / `finalize` for live changes (`lab.control`),
and `abort` to stop a failed run. Every function here returns quickly and never blocks the
engine, so the engine keeps answering while its training thread works.
"""
from __future__ import annotations

import datetime
import os
import socket
import threading
import traceback
from typing import List, Optional

import torch

from . import slices

STATE: dict = {}      # rank, world, device, store, backend ... for the cluster's life
RUNS: dict = {}       # run id -> RunState
KEEP_CHECKPOINTS = 3  # checkpoint pieces a worker keeps until fetched


class RunState:
    def __init__(self, run_id):
        self.id = run_id
        self.records: list = []          # cumulative: a reconnecting notebook can fetch from 0
        self.status = "starting"
        self.error: Optional[str] = None
        self.checkpoints: list = []      # (version, piece): this worker's latest checkpoint pieces
        self.checkpoint_version = 0
        self.thread: Optional[threading.Thread] = None
        self.control = None
        self.trainer = None


def listen_port(host: str = "127.0.0.1") -> int:
    """Rank 0: bind the rendezvous socket (loopback by default) and return its port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen(128)
    STATE["listen_sock"] = sock      # TCPStore would otherwise bind every interface
    return sock.getsockname()[1]


def store_port() -> int:
    """Rank 0: the rendezvous store's port (its connections are not gloo's; lab.sockets leaves them out)."""
    return STATE["listen_sock"].getsockname()[1]


def local_addr(target: str) -> str:
    """The address this engine uses to reach `target` (no packet is sent: a UDP connect picks the route)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect((target, 9))
        return s.getsockname()[0]
    finally:
        s.close()


def iface_for(target: str) -> Optional[str]:
    """Name of the network interface this engine reaches `target` through (None if unknown)."""
    import psutil
    try:
        addr = local_addr(target)
    except OSError:
        return None
    if addr.startswith("127."):
        return "lo"
    for name, addrs in psutil.net_if_addrs().items():
        if any(a.family == socket.AF_INET and a.address == addr for a in addrs):
            return name
    return None


def setup(rank: int, world: int, host: str, port: int, device: str, threads: int,
          backend: str, timeout_s: float) -> dict:
    """Join the cluster's process group (once per cluster life) and pin device and threads."""
    import torch.distributed as dist
    if dist.is_initialized():
        if STATE.get("rank") == rank and STATE.get("world") == world:
            return info()
        raise RuntimeError("this engine is already in another process group: restart the cluster")
    ifname = iface_for(host)   # gloo (and NCCL) would pick an interface from the hostname: use the
    if ifname:                 # one this engine reaches rank 0 through (loopback, a host's eth0, ...)
        os.environ.setdefault("GLOO_SOCKET_IFNAME", ifname)
        os.environ.setdefault("NCCL_SOCKET_IFNAME", ifname)
    torch.set_num_threads(max(1, threads))
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    td = datetime.timedelta(seconds=timeout_s)
    if rank == 0:
        store = dist.TCPStore(host, port, world, is_master=True, timeout=td, use_libuv=False,
                              master_listen_fd=STATE["listen_sock"].fileno())
    else:
        store = dist.TCPStore(host, port, world, is_master=False, timeout=td)
    dist.init_process_group(backend, store=store, rank=rank, world_size=world, timeout=td)
    STATE.update(rank=rank, world=world, device=device, store=store, backend=backend,
                 threads=threads, host=host, timeout_s=timeout_s)
    make_groups(timeout_s)
    return info()


def make_groups(timeout_s: float, data_group=None, ranks=None):
    """The control plane beside a data group: a gloo group on the CPU (clocks, health checks, barriers,
    small messages; lab.comm), whatever the data group's backend. Every rank of the default group
    calls it, in the same order (torch's rule for new groups); call it again after re-forming the
    default group. Returns the control group (STATE["control"] for the default data group)."""
    import torch.distributed as dist
    from .comm import register_control
    control = dist.new_group(ranks, timeout=datetime.timedelta(seconds=timeout_s), backend="gloo")
    register_control(data_group, control)
    if data_group is None:
        STATE["control"] = control
    # every thread of this engine (the new groups' gloo threads among them) and, by inheritance,
    # every later one asks for a short scheduler slice: a message's wake-up preempts (lab.slices)
    slices.set_slice(slices.SLICE_US)
    return control


def start_watchdog(lease: str, grace_s: float, controller_pid: Optional[int] = None) -> None:
    """Exit this engine (and, on rank 0, the controller) once the notebook's lease goes stale.

    The notebook touches `lease` every few seconds while its Cluster object lives. A restarted
    kernel reconnects within `grace_s` and touches it again; a crashed kernel or test run does
    not, and then nothing is left running after `grace_s` seconds.
    """
    import signal
    import time

    def watch():
        while True:
            time.sleep(min(5.0, grace_s / 4))
            try:
                age = time.time() - os.path.getmtime(lease)
            except OSError:
                age = float("inf")
            if age > grace_s:
                if controller_pid:
                    try:
                        os.kill(controller_pid, signal.SIGTERM)
                    except OSError:
                        pass
                os._exit(0)

    if not STATE.get("watchdog"):
        STATE["watchdog"] = threading.Thread(target=watch, name="lab-watchdog", daemon=True)
        STATE["watchdog"].start()


def pin_cores(cores: Optional[List[int]]) -> int:
    """Every thread of this engine onto `cores` (None: back to the cores it was started with), as
    `Cluster` plans them (lab.affinity). Returns how many threads took it."""
    from . import affinity
    STATE["pinned"] = list(cores) if cores is not None else None
    return affinity.pin(cores)


def info() -> dict:
    """This engine: rank, device and its figures (lab.devices.figures), planes, threads, GPUs it sees."""
    import torch.distributed as dist
    from . import affinity
    from .devices import data_plane, figures
    device = STATE.get("device")
    out = {"rank": STATE.get("rank"), "world": STATE.get("world"), "device": device,
           "backend": STATE.get("backend"), "threads": torch.get_num_threads(), "pid": os.getpid(),
           "host": socket.gethostname(), "initialized": dist.is_initialized(),
           "cuda": torch.cuda.device_count(), "cpus": affinity.started_on(),
           "pinned": STATE.get("pinned")}
    if device is not None and device.startswith("cuda"):  # its own GPU only: no CUDA context on the others
        out["gpu_free_mb"] = torch.cuda.mem_get_info(torch.device(device))[0] / 2**20
    if device is not None:
        out.update(figures(device), device=device, data_plane=data_plane(STATE.get("backend"), device),
                   control_plane="gloo (cpu)" if STATE.get("control") is not None else None)
    return out


def start_run(run_id: str, cfg_dict: dict, resume: Optional[dict] = None) -> str:
    """Start training in a background thread and return at once."""
    from .config import RunConfig
    from .control import ControlPoint
    from .train import Trainer
    busy = [r.id for r in RUNS.values() if r.thread is not None and r.thread.is_alive()]
    if busy:
        raise RuntimeError(f"run {busy[0]} is still going on this worker: stop it first")
    RUNS.clear()  # earlier runs were fetched and saved by the notebook
    st = RUNS[run_id] = RunState(run_id)
    cfg = RunConfig.from_dict(cfg_dict)
    ctx = context(run_id)
    st.control = ControlPoint(timeout=max(30.0, STATE.get("timeout_s", 30.0)))

    def keep_checkpoint(piece):
        # a few, not one: the notebook saves a step once every worker's piece of it arrived, and a
        # fast worker may take its next one before a poll fetched this one
        st.checkpoint_version += 1
        st.checkpoints = st.checkpoints[-(KEEP_CHECKPOINTS - 1):] + [(st.checkpoint_version, piece)]

    def body():
        try:
            bind_thread(ctx.device)  # CUDA's current device is per thread
            st.trainer = Trainer(cfg, ctx, st.records.append, st.control, keep_checkpoint, resume)
            st.status = "running"
            st.trainer.run()
            st.status = "stopped" if st.trainer.stopped else "finished"
        except BaseException as e:  # reported to the notebook by `fetch`, never lost
            st.status, st.error = "failed", f"{type(e).__name__}: {e}"
            st.traceback = traceback.format_exc()

    st.thread = threading.Thread(target=body, name=f"lab-run-{run_id}", daemon=True)
    st.thread.start()
    return "started"


def bind_thread(device) -> None:
    """Make `device` the calling thread's current CUDA device (setup's `set_device` held for its thread only)."""
    if torch.device(device).type == "cuda":
        torch.cuda.set_device(torch.device(device))


def context(run_id: str = ""):
    """This worker's WorkerContext (rank, device, a fresh Comm on the cluster's process group,
    or on its engine group's after `Cluster.split`: then rank and world are the group's)."""
    from .comm import Comm
    from .strategies.base import WorkerContext
    g = STATE.get("group")   # set by lab.groups.join
    rank, world, pg = (g["rank"], g["world"], g["pg"]) if g else (STATE["rank"], STATE["world"], None)
    control = g.get("control") if g else STATE.get("control")  # the gloo control plane beside it
    return WorkerContext(rank=rank, world=world, device=torch.device(STATE["device"]),
                         comm=Comm(rank, world, group=pg, device=STATE["device"], control=control),
                         store=STATE["store"], group=pg, run_id=run_id,
                         abort_reason=lambda: _aborted(run_id))


def _aborted(run_id: str) -> Optional[str]:
    """Why run `run_id` was aborted on this worker (the notebook aborts all when one dies), or None."""
    control = getattr(RUNS.get(run_id), "control", None)
    return getattr(control, "aborted", None)


def fetch(run_id: str, cursor: int, checkpoint_version: int = -1) -> dict:
    """New records since `cursor`, the run's status, and this worker's checkpoint pieces newer
    than `checkpoint_version` (oldest first)."""
    st = RUNS.get(run_id)
    if st is None:
        return {"records": [], "status": "unknown", "error": f"worker {STATE.get('rank')} has no run {run_id}"}
    # status before records: once a run is done its last record is already in the list, so a
    # notebook that sees "finished" has also received everything (no record lost to the race)
    status, error = st.status, st.error
    out = {"status": status, "error": error, "records": st.records[cursor:],
           "step": st.trainer.step if st.trainer else 0, "checkpoint_version": st.checkpoint_version,
           "paused": bool(st.trainer and st.trainer.paused)}
    if status in ("finished", "stopped") and st.trainer is not None and st.trainer.after_last_step:
        out["after_last_step"] = st.trainer.after_last_step  # e.g. a server's bytes while it drained
    newer = [piece for v, piece in st.checkpoints if v > checkpoint_version]
    if newer:
        out["checkpoints"] = newer
    return out


def propose(run_id: str, cmd_id: int, changes: dict) -> Optional[int]:
    st = RUNS.get(run_id)
    if st is None or st.status not in ("starting", "running"):
        return None
    return st.control.propose(cmd_id, changes)


def finalize(run_id: str, cmd_id: int, effective: int) -> None:
    st = RUNS.get(run_id)
    if st is not None:
        st.control.finalize(cmd_id, effective)


def abort(run_id: str, why: str) -> None:
    st = RUNS.get(run_id)
    if st is not None and st.control is not None:
        st.control.abort(why)


def kill_self() -> None:
    """For fault-injection tests and chapters: this engine dies at once, as a crash would."""
    os._exit(1)


def model_state(run_id: str) -> dict:
    """This worker's current model parameters (CPU copies), e.g. to check replicas agree."""
    model = RUNS[run_id].trainer.model
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def optimizer_state(run_id: str) -> dict:
    """This worker's optimizer state (CPU copies), e.g. to check a server's state moved intact."""
    from .checkpoints import to_cpu
    return to_cpu(RUNS[run_id].trainer.optimizer.state_dict())


def health() -> bool:
    """A one-number all-reduce over the cluster's control group (a CPU tensor: gloo, never the data
    group, which may be NCCL): True if the group still works."""
    import torch.distributed as dist
    busy = [r.id for r in RUNS.values() if r.thread is not None and r.thread.is_alive()]
    if not dist.is_initialized():
        return False
    if busy:  # a run is using the group right now (a collective here could interleave with its own)
        return True
    g = STATE.get("group")  # split (lab.groups): the engine's own group, since the others may be busy
    if g is None and STATE.get("split"):
        return True         # an engine left out of every group
    t = torch.ones(1)
    dist.all_reduce(t, group=g.get("control") if g else STATE.get("control"))
    return int(t.item()) == (g["world"] if g else STATE["world"])


# lab.elastic (elastic runs) sits below the worker and borrows these on the engine
from . import elastic as _elastic  # noqa: E402

_elastic.bind(STATE=STATE, RUNS=RUNS, context=context, make_groups=make_groups, iface_for=iface_for, info=info)
