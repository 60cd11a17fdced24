"""The cluster: ipyparallel engines as workers, joined in one torch.distributed process group.

Chapter 00 starts here. Engines are separate processes started by ipyparallel (never forked
from the notebook, so CUDA in the notebook stays safe). `Cluster.start` gives each engine a rank,
a device (GPU `rank mod n_gpus`, else a fair share of the CPU threads) and joins them in a
process group that lives as long as the cluster (gloo on CPU or a shared GPU, NCCL when each
worker owns a GPU), rendezvousing on a fresh port bound to loopback.

Lifecycle: `start` / `stop` (also a context manager), `attach` for a cluster somebody else
started (`ipcluster start`, or ipyparallel's MPI / SSH / Slurm / PBS launchers: the path past
one machine). Re-running `Cluster.start` reuses the running cluster when it fits, or replaces
it; a restarted kernel reconnects to it. A lease file keeps the engines alive only while a
notebook holds the cluster: after a crash they exit by themselves within `grace_s` seconds.
"""
from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from typing import List, Optional

from . import affinity
from .errors import ConfigError, WorkerError, check
from .pids import pid_alive
from .remote import call as _call

PROJECT_DIR = Path(__file__).resolve().parent.parent


def _ipython_dir() -> Path:
    return Path(os.environ.get("IPYTHONDIR") or PROJECT_DIR / ".ipython")


class _Lease:
    """Touches a file every few seconds while the notebook holds the cluster (see worker.start_watchdog)."""

    def __init__(self, path: Path, every: float = 3.0):
        self.path, self.every = path, every
        self._stop = threading.Event()
        self.touch()
        self._thread = threading.Thread(target=self._run, name="lab-lease", daemon=True)
        self._thread.start()

    def touch(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch()

    def _run(self):
        while not self._stop.wait(self.every):
            try:
                self.touch()
            except OSError:
                pass

    def close(self, remove: bool = True):
        self._stop.set()
        if remove:
            try:
                self.path.unlink()
            except OSError:
                pass


class Cluster:
    """N workers (ipyparallel engines) in one torch.distributed process group.

    Use `Cluster.start(workers=2)` for a local cluster or `Cluster.attach(...)` for a running one.

    Example:
        >>> from lab import Cluster, RunConfig
        >>> with Cluster.start(workers=2) as cluster:
        ...     run = cluster.train(RunConfig(steps=300))
        ...     run.wait()
    """
    _live: dict = {}   # cluster_id -> Cluster started by this kernel (re-running a cell reuses it)
    claims_dir: Optional[Path] = None   # where clusters on this machine say which cores they hold
                                        # (lab.affinity.Claims; None: its machine-wide default)

    def __init__(self, client, ipp_cluster=None, engine_ids: Optional[List[int]] = None, infos=None,
                 cluster_id: str = "", lease: Optional[_Lease] = None, timeout_s: float = 30.0):
        self.client = client
        self.ipp = ipp_cluster
        self.engine_ids = list(engine_ids or sorted(client.ids))
        self.view = client.direct_view(self.engine_ids)   # rank r is engine_ids[r]
        self.infos = infos or []
        self.cluster_id = cluster_id
        self.lease = lease
        self.timeout_s = timeout_s
        self._procs: list = []   # the processes a local cluster started (see stop)
        self.net = None          # lab.hosts.Hosts when the workers run on hosts on real links
        self.pin = True          # each worker on cores of its own where there are enough (lab.affinity)

    # -- starting -------------------------------------------------------------------------------
    @classmethod
    def start(cls, workers: int = 2, *, device: str = "auto", threads: Optional[int] = None,
              cluster_id: str = "lab", host: str = "127.0.0.1", timeout_s: float = 30.0,
              grace_s: float = 120.0, reuse: bool = True, hosts: int = 0, link_mbps=None,
              pin=True) -> "Cluster":
        """Start `workers` local engines (or reuse the running cluster with that id).

        Args:
            workers: number of workers (engines), >= 1.
            device: "auto" (a GPU per worker, `rank mod n_gpus`, when CUDA exists), "cpu", "cuda", or
                "cuda:N" (every worker on GPU N). Asking for a GPU this machine lacks is a one-line
                ConfigError before anything starts (lab.devices.check_request).
            threads: torch threads per worker; default: the machine's cores / workers.
            cluster_id: names the cluster, so a restarted kernel finds it again.
            host: the address everything listens on; loopback unless you ask otherwise.
            timeout_s: timeout for start-up and for collectives (a dead peer becomes an error).
            grace_s: engines exit by themselves this long after the notebook lets go.
            reuse: reuse a running cluster of the same id and size instead of replacing it.
            hosts: run the workers on this many hosts on real, shaped links (network namespaces on
                a private bridge, `lab.hosts`; needs root); 0: all on this host over loopback.
            link_mbps: each host's link in Mbit/s (one number, a list of one per host, or None:
                unshaped); change one live with `set_link`.
            pin: True: each worker on cores of its own, where there are as many cores as workers
                or more (`lab.affinity`); "share": past that too, round robin (for equal loads);
                False: where the scheduler puts them.
        Returns:
            a Cluster whose engines are ready, ranks 0..workers-1.
        """
        check(isinstance(workers, int) and not isinstance(workers, bool) and 1 <= workers <= 256,
              "workers", "an integer in [1, 256]", workers)
        from .devices import check_request
        check_request(device)   # "cuda" without CUDA, a GPU index out of range: one line, nothing started
        check(threads is None or (isinstance(threads, int) and threads >= 1), "threads", "an integer >= 1 or None", threads)
        check(isinstance(timeout_s, (int, float)) and 1 <= timeout_s <= 3600, "timeout_s", "a number in [1, 3600]", timeout_s)
        check(isinstance(hosts, int) and not isinstance(hosts, bool) and 0 <= hosts <= workers, "hosts",
              f"an integer in [0, workers={workers}] (at most one host per worker)", hosts)
        affinity.check_mode(pin)
        if hosts:
            from .hosts import check_rates
            check_rates(hosts, link_mbps)
        live = cls._live.get(cluster_id)
        if live is not None:
            if reuse and live.alive() and live.workers == workers and live.healthy() and \
                    len(live.net or ()) == hosts and (not hosts or live.net.rates == check_rates(hosts, link_mbps)):
                return live.pin_cores(pin)
            live.stop()
        if hosts:
            return cls._start_new(workers, device, threads, cluster_id, host, timeout_s, grace_s, hosts, link_mbps,
                                  pin)
        if reuse:
            found = cls._reconnect(cluster_id, workers, timeout_s, grace_s)
            if found is not None:
                return found.pin_cores(pin)
        return cls._start_new(workers, device, threads, cluster_id, host, timeout_s, grace_s, pin=pin)

    @classmethod
    def _start_new(cls, workers, device, threads, cluster_id, host, timeout_s, grace_s, hosts=0, link_mbps=None,
                   pin=True):
        import ipyparallel as ipp
        net, kw = None, {}
        if hosts:   # one namespace per host; engine i runs in host i % hosts, the controller on the bridge
            from traitlets.config import Config
            from .hosts import Hosts
            from .launchers import NetnsEngineSetLauncher
            net = Hosts.create(hosts, link_mbps)
            host, kw["config"] = net.bridge_addr, Config()
            kw["config"].NetnsEngineSetLauncher.namespaces = [h.ns for h in net]
            kw["engine_launcher_class"] = NetnsEngineSetLauncher
        else:   # every engine in this process's session: one scheduling group (lab.launchers)
            from .launchers import OneSessionEngineSetLauncher
            kw["engine_launcher_class"] = OneSessionEngineSetLauncher
        ipp_cluster = None
        try:
            ipp_cluster = ipp.Cluster(
                n=workers, cluster_id=cluster_id, profile_dir=str(cls._profile_dir()), controller_ip=host,
                controller_args=["--HeartMonitor.period=500"],  # dead engines noticed in ~seconds, start in ~2 s
                shutdown_atexit=False, log_level=40, **kw)
            ipp_cluster.start_cluster_sync()
            client = ipp_cluster.connect_client_sync()
            # engines take seconds to start, minutes on a loaded machine: starting waits longer than a collective
            client.wait_for_engines(workers, timeout=max(timeout_s, 90.0))
            lease = _Lease(cls._profile_dir() / "security" / f"lab-lease-{cluster_id}")
            ids = sorted(client.ids)[:workers]
            pid = getattr(ipp_cluster.controller, "pid", None)
            if net is not None:   # ranks by host (rank 0 on host 0), the rendezvous on rank 0's host
                net.watch(pids=[pid] if pid else [], lease=str(lease.path), grace_s=grace_s)
                where = {e: client[e].apply_async(_call, "local_addr", net.bridge_addr).get(timeout=timeout_s)
                         for e in ids}
                index = {h.addr: h.index for h in net}
                ids = sorted(ids, key=lambda e: (index.get(where[e], len(index)), e))
                host = net[0].addr
            self = cls(client, ipp_cluster, ids, cluster_id=cluster_id, lease=lease, timeout_s=timeout_s)
            self.grace_s = grace_s   # (engines added later, lab.elastic.add_workers, watch the lease as long)
            if net is not None:
                self.net, self._rank_host = net, [index.get(where[e]) for e in ids]
            self._call_all("start_watchdog", [(str(lease.path), grace_s, pid if r == 0 else None)
                                              for r in range(workers)])
            self._setup(device, threads, host)
            self.pin_cores(pin)
            self._procs = _family(self._roots())
        except BaseException:
            try:
                if ipp_cluster is not None:
                    ipp_cluster.stop_cluster_sync()
            finally:
                if net is not None:
                    net.stop()
            raise
        cls._live[cluster_id] = self
        return self

    @classmethod
    def _reconnect(cls, cluster_id, workers, timeout_s, grace_s) -> Optional["Cluster"]:
        """Reconnect to a cluster this project started earlier (e.g. before a kernel restart)."""
        import ipyparallel as ipp
        try:
            ipp_cluster = ipp.Cluster.from_file(profile_dir=str(cls._profile_dir()), cluster_id=cluster_id)
        except Exception:
            return None
        try:
            client = ipp_cluster.connect_client_sync()
            client.wait_for_engines(workers, timeout=min(5.0, timeout_s))
            ids = sorted(client.ids)
            infos = [client[i].apply_async(_call, "info").get(timeout=5) for i in ids]
            # rank r is the engine that joined the process group as r (engine ids may be in any order)
            by_rank = sorted(zip(infos, ids), key=lambda p: -1 if p[0]["rank"] is None else p[0]["rank"])
            infos, order = [p[0] for p in by_rank], [p[1] for p in by_rank]
            if len(ids) != workers or not all(d["initialized"] and d["world"] == workers for d in infos):
                raise RuntimeError("does not fit")
            probe = cls(client, ipp_cluster, order, infos, cluster_id=cluster_id, timeout_s=timeout_s)
            if not probe.healthy():
                raise RuntimeError("process group broken")
        except Exception:
            try:
                ipp_cluster.stop_cluster_sync()
            except Exception:
                pass
            return None
        lease = _Lease(cls._profile_dir() / "security" / f"lab-lease-{cluster_id}")
        self = cls(client, ipp_cluster, order, infos, cluster_id=cluster_id, lease=lease, timeout_s=timeout_s)
        self._procs = _family(self._roots())
        cls._live[cluster_id] = self
        return self

    @classmethod
    def attach(cls, *, profile: Optional[str] = None, cluster_id: str = "", workers: Optional[int] = None,
               profile_dir: Optional[str] = None, device: str = "auto", threads: Optional[int] = None,
               host: Optional[str] = None, timeout_s: float = 30.0,
               connection_file: Optional[str] = None, pin=False) -> "Cluster":
        """Use a running ipyparallel cluster (e.g. `ipcluster start -n 4`, or MPI / SSH / Slurm launchers).

        Its engines must have `lab` installed. `host` is the address rank 0 listens on for the
        rendezvous; by default the address rank 0 reaches the controller from (loopback for a local
        cluster, rank 0's network address across machines). `connection_file`: the controller's
        `ipcontroller-client.json`, for a controller started any way (`ipcontroller` + `ipengine`s).
        Each engine's gloo / NCCL interface is the one it reaches rank 0 through. `pin`: as
        `start`'s, off by default here (the engines are the owner's; they stay as pinned).
        The cluster's owner stops it; `stop()` here only lets go of it.
        """
        affinity.check_mode(pin)
        import ipyparallel as ipp
        if connection_file:
            check(os.path.isfile(connection_file), "connection_file", "an existing ipcontroller-client.json",
                  connection_file)
            client = ipp.Client(connection_file, timeout=timeout_s)
        elif cluster_id or profile_dir:
            kw = {"cluster_id": cluster_id}
            kw.update({"profile_dir": profile_dir} if profile_dir else {"profile": profile or "default"})
            client = ipp.Cluster.from_file(**kw).connect_client_sync()
        else:
            client = ipp.Client(profile=profile or "default", timeout=timeout_s)
        if workers:
            client.wait_for_engines(workers, timeout=timeout_s)
        ids = sorted(client.ids)[: workers or None]
        check(len(ids) >= 1, "workers", "at least one running engine in the attached cluster", len(ids))
        self = cls(client, None, ids, cluster_id=cluster_id, timeout_s=timeout_s)
        if host is None:   # rank 0's address toward the controller
            from urllib.parse import urlparse
            cfg = getattr(client, "_config", {}) or {}
            ctl = urlparse(cfg.get("interface") or "").hostname
            if not ctl or ctl in ("*", "0.0.0.0"):
                ctl = cfg.get("location") or "127.0.0.1"
            host = self.call(0, "local_addr", ctl)
        self._setup(device, threads, host)
        return self.pin_cores(pin) if pin else self

    def _setup(self, device, threads, host):
        n = self.workers
        infos = self._call_all("info", [()] * n)
        from .devices import placement
        gpus = min(d["cuda"] for d in infos)
        if device.startswith("cuda") and gpus == 0:
            raise WorkerError(f"device={device!r} was asked for but the engines see no GPU")
        # engines on one host share its cores; several hosts each have their own
        per_host = {}
        for d in infos:
            per_host[d["host"]] = per_host.get(d["host"], 0) + 1
        cores = os.cpu_count() or 1
        devices, backend = placement(device, n, gpus)  # NCCL when each worker owns a GPU, else gloo
        port = self.view.client[self.engine_ids[0]].apply_async(_call, "listen_port", host).get(timeout=self.timeout_s)
        args = [(r, n, host, port, devices[r], threads or max(1, cores // per_host[infos[r]["host"]]),
                 backend, self.timeout_s) for r in range(n)]
        self.infos = self._call_all("setup", args)

    def pin_cores(self, pin=None, timeout: Optional[float] = None) -> "Cluster":
        """Each worker on its share of its host's cores (`lab.affinity.plan`), by its rank among the
        workers on that host; unpinned (back to the cores it started with) where `pin` is off, where
        there are more workers than cores (unless "share", and then too if the split is uneven), or
        where a launcher started that host's engines on different cores. On this machine only cores
        no other live cluster holds are used (`lab.affinity.Claims`). `pin`: True, False or
        "share" (as `start`'s; None: as it was). Done at start and whenever workers come or go;
        call it to change a running cluster's."""
        if pin is not None:
            affinity.check_mode(pin)
            self.pin = pin
        ranks_by_host: dict = {}
        for r, d in enumerate(self.infos):
            ranks_by_host.setdefault(d.get("host"), []).append(r)
        cores: List[Optional[List[int]]] = [None] * self.workers
        with self._claims.locked() as claims:
            taken = claims.held_by_others(self.cluster_id)
            for host, ranks in ranks_by_host.items():
                started_on = {tuple(self.infos[r].get("cpus") or ()) for r in ranks}   # one set: nobody bound them
                free = [c for c in min(started_on) if host != socket.gethostname() or c not in taken]
                shares = affinity.plan(len(ranks), free, share=self.pin == "share") \
                    if self.pin and len(started_on) == 1 else None
                for i, r in enumerate(ranks):
                    cores[r] = shares[i] if shares else None
            self._call_all("pin_cores", [(c,) for c in cores], timeout=timeout)
            here = [c for r, c in enumerate(cores) if c and self.infos[r].get("host") == socket.gethostname()]
            claims.hold(self.cluster_id, [x for c in here for x in c], self.pids)
        self.infos = [d | {"pinned": c} for d, c in zip(self.infos, cores)]
        return self

    @property
    def _claims(self) -> "affinity.Claims":
        return affinity.Claims(Cluster.claims_dir)

    # -- using --------------------------------------------------------------------------------
    @property
    def workers(self) -> int:
        return len(self.engine_ids)

    @property
    def pids(self) -> List[int]:
        return [d["pid"] for d in self.infos]

    def _call_all(self, fn: str, args_per_rank, timeout: Optional[float] = None):
        """Call `lab.worker.<fn>` on every rank at once; raise WorkerError naming a failed rank."""
        ars = [self.client[e].apply_async(_call, fn, *a) for e, a in zip(self.engine_ids, args_per_rank)]
        out = []
        for r, ar in enumerate(ars):
            try:
                out.append(ar.get(timeout=timeout or self.timeout_s))
            except Exception as e:
                raise WorkerError(f"worker {r} (engine {self.engine_ids[r]}) failed in {fn}: "
                                  f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
        return out

    def apply(self, fn, *args, timeout: Optional[float] = None) -> list:
        """Run `fn(*args)` on every worker at once (so it may use collectives); results by rank.

        Example:
            >>> cluster.apply(lab.ring.engine_check, 1000)   # [0.0, 0.0]
        """
        ars = [self.client[e].apply_async(fn, *args) for e in self.engine_ids]
        return [ar.get(timeout=timeout or self.timeout_s * 4) for ar in ars]

    def call(self, rank: int, fn: str, *args, timeout: Optional[float] = None):
        """Call `lab.worker.<fn>(*args)` on one rank and return its result."""
        return self.client[self.engine_ids[rank]].apply_async(_call, fn, *args).get(timeout=timeout or self.timeout_s)

    def set_link(self, host, mbps) -> None:
        """Change host `host`'s link (index or name, e.g. 1 or "h1") to `mbps` Mbit/s at once (None: unshaped)."""
        if self.net is None:
            raise ConfigError("host", "a host of a cluster started with hosts=N (this one has none)", host)
        self.net.set_rate(host, mbps)

    def host_of(self, rank: int):
        """The lab.hosts.Host worker `rank` runs on (None on a cluster without hosts)."""
        return self.net[self._rank_host[rank]] if self.net is not None else None

    def add_workers(self, k: int = 1, run=None) -> List[int]:
        """Start `k` more workers (engines on this machine): they join `run`, an elastic run going on,
        at its next step with state from a live peer (`lab.elastic`), or with no run the cluster's
        process group at once. Returns their ranks."""
        from .membership import add_workers
        return add_workers(self, k, run)

    def kill_worker(self, rank: int) -> None:
        """Fault injection (chapter 11, tests): worker `rank`'s engine dies at once, as in a crash."""
        check(isinstance(rank, int) and 0 <= rank < self.workers, "rank", f"an integer in [0, {self.workers - 1}]", rank)
        self.client[self.engine_ids[rank]].apply_async(_call, "kill_self")
        deadline = time.time() + 10
        while time.time() < deadline and rank not in self.dead_workers():
            time.sleep(0.05)

    def alive(self) -> bool:
        """True when every worker's engine process is still there (checked locally, at once)."""
        try:
            if self.client._closed:
                return False
        except AttributeError:
            pass
        return all(pid_alive(p) for p in self.pids) if self.ipp is not None else \
            set(self.engine_ids) <= set(self.client.ids)

    def healthy(self, timeout: float = 5.0) -> bool:
        """True when every worker answers and a tiny all-reduce over the process group succeeds.

        A worker that died, or a collective that timed out, leaves the group unusable: then
        `Cluster.start` replaces the cluster instead of reusing it.
        """
        try:
            ars = [self.client[e].apply_async(_call, "health") for e in self.engine_ids]
            return all(ar.get(timeout=timeout) for ar in ars)
        except Exception:
            return False

    def dead_workers(self) -> List[int]:
        """Ranks whose engine process has died (local clusters) or unregistered (others)."""
        if self.ipp is not None:
            return [r for r, p in enumerate(self.pids) if not pid_alive(p)]
        ids = set(self.client.ids)
        return [r for r, e in enumerate(self.engine_ids) if e not in ids]

    def train(self, cfg=None, **changes):
        """Start a training run in the background and return its `lab.runs.Run` at once.

        Args:
            cfg: a RunConfig (default: RunConfig()).
            **changes: knobs to change on a copy of cfg, e.g. `lr=0.1, strategy="sync"`.
        """
        from .config import RunConfig
        from .runs import Run
        cfg = (cfg or RunConfig()).replace(**changes)
        check(not getattr(self, "groups", None), "cluster", "not split: train on its groups, or cluster.merge() first",
              f"split into {len(getattr(self, 'groups', None) or ())} groups")
        from .fit import check_run_fits
        check_run_fits(cfg, self.infos)  # workers sharing a GPU must fit in it: one line, before anything starts
        return Run.start(self, cfg)

    def split(self, groups):
        """Split the workers into groups that train side by side, each with its own process group
        (`lab.groups`): `a, b = cluster.split(2)`, then `a.train(cfg1)`, `b.train(cfg2)`."""
        from .groups import split
        return split(self, groups)

    def merge(self) -> "Cluster":
        """Undo `split`: runs use all the workers again."""
        from .groups import merge
        return merge(self)

    # -- stopping -----------------------------------------------------------------------------
    def stop(self, wait_s: float = 3.0) -> None:
        """Stop the engines and the controller (only let go of an attached cluster).

        Returns once every process the cluster started (controller, engines, the engines'
        nannies) has exited: those still there `wait_s` seconds after being asked are killed.
        """
        Cluster._live.pop(self.cluster_id, None)
        if any(d.get("pinned") for d in self.infos):   # its cores are free for other clusters
            self._claims.release(self.cluster_id)
        if self.lease is not None:
            self.lease.close()
        self._rendezvous = None   # the notebook-hosted store of elastic runs (lab.elastic), if any
        try:
            self.client.close(linger=0)
        except Exception:
            pass
        if self.ipp is not None:
            # the family known at start counts too: a dead engine's nanny is nobody's child by now
            family = {p.pid: p for p in self._procs + _family(self._roots())}
            try:
                self.ipp.stop_cluster_sync()
            except Exception:
                pass
            _end_all(list(family.values()), wait_s)  # nothing may outlive stop()
        if self.net is not None:
            self.net.stop()

    def _roots(self) -> List[int]:
        ctl = getattr(self.ipp.controller, "pid", None) if self.ipp is not None and self.ipp.controller else None
        return list(self.pids) + ([ctl] if ctl else [])

    def restart(self) -> "Cluster":
        """A fresh cluster of the same size (after a worker died, the process group is broken)."""
        n, cid = self.workers, self.cluster_id
        hosts, rates = (len(self.net), self.net.rates) if self.net is not None else (0, None)
        self.stop()
        return Cluster.start(n, cluster_id=cid, timeout_s=self.timeout_s, reuse=False, hosts=hosts, link_mbps=rates)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def __repr__(self):
        devs = ", ".join(sorted({d["device"] for d in self.infos})) if self.infos else "?"
        backend = self.infos[0]["backend"] if self.infos else "?"
        state = "running" if self.alive() else "stopped"
        return f"<Cluster {self.cluster_id or '(attached)'}: {self.workers} workers on {devs}, {backend}, {state}>"

    @staticmethod
    def _profile_dir() -> Path:
        return _ipython_dir() / "profile_lab"


def _family(pids: List[int]) -> list:
    """psutil handles on these processes and all their descendants (an engine's nanny is its child).

    Handles, not pids: psutil refuses to signal a handle whose pid was reused by another process."""
    import psutil
    out = []
    for pid in pids:
        try:
            p = psutil.Process(pid)
            out += [p] + p.children(recursive=True)
        except psutil.Error:
            pass
    return out


def _gone(p) -> bool:
    import psutil
    try:
        return not p.is_running() or p.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def _end_all(procs: list, wait_s: float = 3.0) -> None:
    """SIGTERM every process still running, wait up to `wait_s` for all to exit, SIGKILL the rest."""
    import psutil
    for signal_, wait in (("terminate", wait_s), ("kill", 2.0)):
        procs = [p for p in procs if not _gone(p)]
        for p in procs:
            try:
                getattr(p, signal_)()
            except psutil.Error:
                pass
        deadline = time.time() + wait
        while procs and time.time() < deadline:
            for p in procs:
                try:
                    p.wait(0)  # reaps our own children (the engines), so they leave no zombie
                except (psutil.Error, ChildProcessError):
                    pass
            procs = [p for p in procs if not _gone(p)]
            if procs:
                time.sleep(0.05)

