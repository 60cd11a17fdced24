"""Runs: start training on the cluster, stream every record to the notebook, save, reload.

Chapter 00 introduces them. `Run.start` (or `Cluster.train`) returns at once: the engines
train in background threads while the kernel stays idle. `poll()` fetches the records every
worker produced since the last poll (engines keep all of them, so none is lost even if polls
are late or the kernel restarts), appends them to `runs/<id>/records.jsonl` and hands them to
subscribers such as the live dashboard. `set(lr=...)`, `pause()`, `resume()` and `stop()` reach
every worker at the same step (see `lab.control`). A dead worker becomes a `WorkerError` within
a poll or two, never a hang. `load_run(path)` reloads a saved run for comparison.
"""
from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from pathlib import Path
from typing import Callable, Dict, List, Optional

from . import checkpoints, provenance, records
from .config import RunConfig, set_path
from .devices import device_summary
from .errors import WorkerError
from .remote import call as _call

DONE = ("finished", "stopped", "failed", "interrupted")


class RunData:
    """A run's config, records and metadata, live or reloaded; the analysis helpers."""

    def __init__(self, run_id: str, cfg: RunConfig, records: List[dict], meta: dict, path: Optional[Path]):
        self.id, self.cfg, self.records, self.meta, self.path = run_id, cfg, records, meta, path

    @property
    def label(self) -> str:
        return self.cfg.name or self.id

    @property
    def workers(self) -> int:
        return int(self.meta.get("workers") or (max((r["rank"] for r in self.records), default=0) + 1))

    def by_rank(self) -> Dict[int, List[dict]]:
        out: Dict[int, List[dict]] = {}
        for r in self.records:
            out.setdefault(r["rank"], []).append(r)
        return out

    def series(self, key: str, rank: Optional[int] = None):
        """(steps, values, times) of `key` over the records that carry it."""
        rows = [r for r in self.records if r.get(key) is not None and (rank is None or r["rank"] == rank)]
        return [r["step"] for r in rows], [r[key] for r in rows], [r["t"] for r in rows]

    def final(self, key: str = "test_acc"):
        vals = self.series(key)[1]
        return vals[-1] if vals else None

    def time_to(self, key: str, threshold: float, higher_is_better: Optional[bool] = None):
        """Seconds until `key` first reached `threshold` (None if never); the direction defaults
        to the field's declaration in `lab.records`."""
        if higher_is_better is None:
            higher_is_better = records.higher_is_better(key) is not False
        _, vals, ts = self.series(key)
        for v, t in zip(vals, ts):
            if (v >= threshold) if higher_is_better else (v <= threshold):
                return t
        return None

    def wire(self) -> dict:
        """Every byte the run put on the wire, by node: each worker's algorithm bytes plus the
        transport's framing around its messages, and a hosted parameter server (async, ssp: a thread
        beside worker 0 with a ledger of its own) as a node of its own. Runs compare fairly by
        `per_sample`: total wire bytes over all nodes per training sample (or environment step).

        Returns {"nodes": [{"node", "steps", "algorithm", "framing", "wire", "wire_per_step"}, ...],
                 "total": bytes, "samples": n, "per_sample": bytes / n}.
        """
        after = self.meta.get("after_last_step", {})
        nodes = []
        server = {"algorithm": 0, "framing": 0, "steps": 0}
        for rank, rows in sorted(self.by_rank().items()):
            tail = after.get(str(rank)) or {}
            algo = sum(r["bytes_sent"] for r in rows) + tail.get("bytes_sent", 0)
            framing = sum(r.get("framing_bytes", 0) for r in rows) + tail.get("framing_bytes", 0)
            nodes.append({"node": f"worker {rank}", "steps": len(rows), "algorithm": algo, "framing": framing})
            hosted = [r for r in rows if "server_framing_bytes" in r]
            if hosted or "server_framing_bytes" in tail:
                server["node"] = f"server (beside worker {rank})"
                server["steps"] = len(rows)
                server["algorithm"] += sum(r["server_bytes_sent"] for r in hosted) + tail.get("server_bytes_sent", 0)
                server["framing"] += sum(r["server_framing_bytes"] for r in hosted) + tail.get("server_framing_bytes", 0)
        if "node" in server:
            nodes.append(server)
        for n in nodes:
            n["wire"] = n["algorithm"] + n["framing"]
            n["wire_per_step"] = n["wire"] / n["steps"] if n["steps"] else 0.0
        total = sum(n["wire"] for n in nodes)
        samples = sum(r["n"] for r in self.records)
        return {"nodes": nodes, "total": total, "samples": samples, "per_sample": total / samples if samples else 0.0}

    def summary(self) -> dict:
        """Final test metrics, per-worker throughput and bytes per step, wall time, and the
        wire's bytes by node (`wire`)."""
        per = {}
        for rank, rows in sorted(self.by_rank().items()):
            busy = sum(r["step_s"] for r in rows)
            per[rank] = {
                "steps": len(rows),
                "throughput": sum(r["n"] for r in rows) / busy if busy else 0.0,
                "bytes_sent_per_step": sum(r["bytes_sent"] for r in rows) / len(rows),
                "bytes_recv_per_step": sum(r["bytes_recv"] for r in rows) / len(rows),
                "framing_bytes_per_step": sum(r.get("framing_bytes", 0) for r in rows) / len(rows),
                "wire_bytes_sent_per_step": sum(r["bytes_sent"] + r.get("framing_bytes", 0) for r in rows) / len(rows),
                "compute_s": sum(r["compute_s"] for r in rows), "comm_s": sum(r["comm_s"] for r in rows),
                "wait_s": sum(r["wait_s"] for r in rows), "sim_link_s": sum(r["sim_link_s"] for r in rows),
                "overlap_s": sum(r.get("overlap_s", 0.0) for r in rows),  # communication hidden behind backward
            }
            per[rank].update(device_summary(self.meta, rank, rows))  # device, name, memory, load (n/a on CPU)
            after = self.meta.get("after_last_step", {}).get(str(rank)) or {}
            if after:  # accrued after the worker's last record (a server draining the others' pushes)
                per[rank]["after_last_step"] = after
            if any("server_bytes_sent" in r for r in rows):  # the parameter server on this worker
                for way in ("sent", "recv"):
                    key = f"server_bytes_{way}"
                    total = sum(r.get(key, 0) for r in rows) + after.get(key, 0)
                    per[rank][f"server_bytes_{way}_per_step"] = total / len(rows)
        unit = self.records[0]["unit"] if self.records else "samples"
        out = {"id": self.id, "label": self.label, "strategy": self.cfg.strategy.name,
               "compressor": self.cfg.strategy.compression.name, "workers": self.workers,
               "status": self.meta.get("status"), "unit": unit,
               "steps": max((r["step"] for r in self.records), default=-1) + 1,
               "wall_s": max((r["t"] for r in self.records), default=0.0),
               "throughput_total": sum(p["throughput"] for p in per.values()),
               "per_worker": per, "wire": self.wire()}
        if self.meta.get("data_plane"):
            out["data_plane"] = self.meta["data_plane"]
        for key in records.held_out():
            v = self.final(key)
            if v is not None:
                out[key] = v
        if any("membership" in e for e in self.meta.get("events", [])):  # an elastic run's changes
            from .elastic import events
            out["membership"] = events(self.meta)
        if self.meta.get("error"):
            out["error"] = self.meta["error"]
        return out

    def __repr__(self):
        s = self.summary()
        metric = next((f"{k}={s[k]:.4g}" for k in records.held_out() if k in s), "")
        return f"<Run {self.id}: {s['strategy']}, {s['workers']} workers, {s['steps']} steps, {s['status']} {metric}>"


class Run(RunData):
    """A live run on a cluster. Created by `Run.start(cluster, cfg)` or `cluster.train(cfg)`."""

    def __init__(self, cluster, run_id, cfg, path: Path):
        super().__init__(run_id, cfg, [], {"status": "starting", "workers": cluster.workers,
                                          "events": [], "cluster": repr(cluster)}, path)
        self.cluster = cluster
        self._cursor = [0] * cluster.workers
        self._ck_version = [-1] * cluster.workers   # per rank: the newest checkpoint piece fetched
        self._pieces: Dict[int, Dict[int, dict]] = {}  # step -> rank -> piece, until every rank's is in
        self._status = ["starting"] * cluster.workers
        self._steps = [0] * cluster.workers
        self._subscribers: List[Callable[["Run", List[dict]], None]] = []
        self._cmd = 0
        self._task: Optional[asyncio.Task] = None
        self._t0 = time.time()
        self._paused = False
        self._elastic = None   # lab.elastic.Membership when cfg.elastic

    # -- starting -------------------------------------------------------------------------------
    @classmethod
    def start(cls, cluster, cfg: RunConfig, resume: Optional[dict] = None, command: Optional[str] = None,
              meta: Optional[dict] = None) -> "Run":
        """Validate `cfg`, save it under `runs/<id>/`, and start every worker's training thread.

        `resume` is a checkpoint dict (see `Run.resume_from`): each worker continues from its own
        piece (weights, optimizer, strategy and compression state, step; rank 0's piece for a
        checkpoint of another worker count or an older single-piece one, `lab.checkpoints.piece`).
        `meta.json` records where the run came from (`provenance`: commit, package versions,
        machine, seeds and `command`, the command line that started it, if any) plus `meta`'s items
        (e.g. `repeat_of`), so `python -m lab run --from runs/<id>` can repeat it.
        """
        cfg.validate(workers=cluster.workers)
        run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.strategy.name}-{uuid.uuid4().hex[:6]}"
        path = Path(cfg.runs_dir) / run_id
        path.mkdir(parents=True, exist_ok=True)
        self = cls(cluster, run_id, cfg, path)
        self.meta["provenance"] = provenance.gather(command) | {"seeds": seeds(cfg, cluster.workers)}
        from .devices import run_devices
        self.meta.update(run_devices(getattr(cluster, "infos", None)))  # each worker's device, the data plane
        self.meta.update(meta or {})
        _write_json(path / "config.json", cfg.to_dict())
        self._save_meta()
        if resume is not None:
            self.meta["resumed_from"] = resume.get("run_id", "?")
            self.meta["resumed_at_step"] = int(resume["step"])
        if cfg.elastic:  # the engines join the notebook's store before their training threads start
            from .membership import Membership
            self._elastic = Membership.start(self)
        n = cluster.workers  # each rank gets its own piece of the checkpoint (lab.checkpoints)
        cluster._call_all("start_run", [(run_id, cfg.to_dict(), None if resume is None else checkpoints.piece(resume, r, n))
                                        for r in range(n)])
        self.meta["status"] = "running"
        self._save_meta()
        return self

    @classmethod
    def resume_from(cls, cluster, path, **changes) -> "Run":
        """Continue a saved run (e.g. after a worker died) from its last checkpoint, as a new run.

        Chapter 11 (faults and recovery). The new run starts at the checkpoint's step, each worker
        with its own weights, optimizer, strategy and compression state; `changes` edit the config
        (e.g. `steps=600`).

        Example:
            >>> cluster = cluster.restart()
            >>> run = Run.resume_from(cluster, "runs/20261123-101500-sync-ab12cd")
        """
        import torch
        path = Path(path)
        ck_path = path / "checkpoint.pt"
        if not ck_path.exists():
            from .errors import ConfigError
            raise ConfigError("run path", "a saved run with a checkpoint.pt (runs/<id>/)", str(path))
        ck = torch.load(ck_path, weights_only=False)
        ck["run_id"] = path.name
        cfg = RunConfig.from_dict(ck["config"]).replace(**changes)
        cfg.name = cfg.name or f"resumed {path.name}"
        return cls.start(cluster, cfg, resume=ck)

    # -- streaming ------------------------------------------------------------------------------
    def subscribe(self, callback: Callable[["Run", List[dict]], None]) -> None:
        """Call `callback(run, new_records)` after every poll that brought records."""
        self._subscribers.append(callback)

    def poll(self) -> List[dict]:
        """Fetch every worker's new records (and checkpoint pieces); returns the new records."""
        if self.done:
            return []
        dead = self.cluster.dead_workers()
        if dead and self._elastic is not None and self._elastic.lost(dead):
            return self.poll()   # an elastic run goes on with the others (lab.elastic)
        if dead:
            step = self._steps[dead[0]]
            below = self.meta.get("elastic_stop")
            why = f" ({below['workers']} left, fewer than min_workers={below['min_workers']})" if below else ""
            return self._fail(f"worker {dead[0]} died near step {step}; the others were stopped{why}. "
                              f"The cluster's process group is broken: call cluster.restart()")
        c = self.cluster
        ars = [c.client[e].apply_async(_call, "fetch", self.id, self._cursor[r], self._ck_version[r])
               for r, e in enumerate(c.engine_ids)]
        new: List[dict] = []
        for r, ar in enumerate(ars):
            deadline = time.time() + c.timeout_s
            while not ar.ready() and time.time() < deadline:
                ar.wait(0.25)
                if self.cluster.dead_workers():  # noticed in a quarter second, not after the timeout
                    return self.poll()
            try:
                out = ar.get(timeout=0)
            except Exception as e:
                if self.cluster.dead_workers():
                    return self.poll()
                return self._fail(f"worker {r} did not answer within {c.timeout_s:.0f} s ({type(e).__name__})")
            recs = out["records"]
            self._cursor[r] += len(recs)
            self._status[r] = out["status"]
            self._steps[r] = out.get("step", self._steps[r])
            self._paused = bool(out.get("paused"))
            new.extend(recs)
            if out.get("after_last_step"):
                self.meta.setdefault("after_last_step", {})[str(r)] = out["after_last_step"]
            if out.get("checkpoints"):
                self._ck_version[r] = out["checkpoint_version"]
                self._collect_pieces(r, out["checkpoints"])
            if out["status"] == "failed":
                self._append(new)
                return self._fail(f"worker {r} failed: {out['error']}", new)
        self._append(new)
        if all(s in DONE for s in self._status):
            self.meta["status"] = "stopped" if "stopped" in self._status else "finished"
            self.meta["finished"] = time.time()
            self._save_meta()
            for cb in list(self._subscribers):  # the end usually comes with no new record: say so
                cb(self, [])
        return new

    def _append(self, new: List[dict]) -> None:
        if not new:
            return
        new.sort(key=lambda r: (r["step"], r["rank"]))
        self.records.extend(new)
        with open(self.path / "records.jsonl", "a") as f:
            for r in new:
                f.write(json.dumps(r, default=records.jsonable) + "\n")
            f.flush()
            os.fsync(f.fileno())
        for cb in list(self._subscribers):
            cb(self, new)

    def _fail(self, why: str, new=None) -> List[dict]:
        self._end(why, status="failed", error=why)
        return new or []

    def _end(self, why: str, **meta) -> None:
        """Save the run as ended (`meta`), abort every worker without waiting, tell subscribers."""
        self.meta.update(finished=time.time(), **meta)
        self._save_meta()
        for e in self.cluster.engine_ids:  # fire and forget: never block an interrupt or a failure
            try:
                self.cluster.client[e].apply_async(_call, "abort", self.id, why)
            except Exception:
                pass
        for cb in list(self._subscribers):
            cb(self, [])

    # -- waiting ----------------------------------------------------------------------------
    @property
    def status(self) -> str:
        return "paused" if self._paused and self.meta["status"] == "running" else self.meta["status"]

    @property
    def done(self) -> bool:
        return self.meta["status"] in DONE

    @property
    def step(self) -> int:
        """Steps done by the slowest worker."""
        return min(self._steps)

    def progress(self) -> dict:
        """Steps done, elapsed seconds and an estimate of the seconds left."""
        done = max((r["step"] + 1 for r in self.records), default=0)
        elapsed = time.time() - self._t0
        t = max((r["t"] for r in self.records), default=0.0)
        eta = (t / done) * (self.cfg.steps - done) if done else None
        return {"step": done, "steps": self.cfg.steps, "elapsed": elapsed, "eta": eta, "status": self.status}

    def wait(self, timeout: Optional[float] = None, interval: float = 0.2,
             until: Optional[Callable[["Run"], bool]] = None) -> "Run":
        """Poll until the run ends, or until `until(run)` holds (blocking: for scripts, tests and
        a chapter's "train a while, then..."; notebooks watch live runs with `watch`).

        Raises WorkerError if a worker failed or died, TimeoutError after `timeout` seconds.
        """
        deadline = None if timeout is None else time.time() + timeout
        try:
            while not self.done and not (until is not None and until(self)):
                self.poll()
                if deadline and time.time() > deadline:
                    raise TimeoutError(f"run {self.id} still going after {timeout} s (status {self.status})")
                if not self.done:
                    time.sleep(interval)
        except KeyboardInterrupt:  # Ctrl-C: saved as interrupted, not left "running" forever
            self.interrupt()
            raise
        if self.meta["status"] == "failed":
            raise WorkerError(self.meta["error"])
        return self

    def watch(self, interval: float = 0.25) -> asyncio.Task:
        """Poll in the notebook's event loop, so cells stay free and widgets keep answering."""
        async def loop():
            while not self.done:
                try:
                    self.poll()
                except Exception as e:  # never let the background task die silently
                    self._fail(f"polling failed: {type(e).__name__}: {e}")
                await asyncio.sleep(interval)
        if self._task is None or self._task.done():
            self._task = asyncio.get_event_loop().create_task(loop())
        return self._task

    def interrupt(self, why: str = "interrupted (Ctrl-C)") -> None:
        """End the run now (Ctrl-C in `wait` or the CLI): workers abort, the run is saved as
        "interrupted" at its last recorded step; the records polled so far stay in records.jsonl."""
        if self.done:
            return
        self._end(why, status="interrupted", last_step=max((r["step"] for r in self.records), default=-1))

    # -- live control -------------------------------------------------------------------------
    def set(self, **changes) -> Optional[int]:
        """Change knobs while the run goes (e.g. `lr=0.01`, `strategy="async"`).

        Every worker applies the change at the same step, which is returned (None if the run
        had already ended). The change is validated first, saved in the run's events and marked
        in the records (`changes` field) at that step. On a cluster with hosts on real links,
        `link_mbps={"h1": 2.5}` (host name or index -> Mbit/s) changes those links at that step.
        """
        user = {k: v for k, v in changes.items() if not k.startswith("_")}
        links = _links(self.cluster, user.pop("link_mbps")) if "link_mbps" in user else None
        if user:
            trial = self.cfg.replace(**{k: v for k, v in user.items() if k != "slowdown"})
            if "slowdown" in user:
                trial.slowdown = list(user["slowdown"])
            trial.validate(workers=self.workers)
        if links:
            changes = dict(changes, link_mbps=links)
        step = self._command(changes)
        if step is not None and links:
            for h, mbps in links.items():
                self.cluster.set_link(h, mbps)
            user["link_mbps"] = links
        if step is not None and user:
            for k, v in user.items():
                if k == "link_mbps":
                    continue   # not a config knob: the hosts' links (changed just above)
                if k == "slowdown":
                    self.cfg.slowdown = list(v)
                else:
                    set_path(self.cfg, k, v)
            self.meta["events"].append({"step": step, "changes": user, "time": time.time() - self._t0})
            self._save_meta()
        return step

    def pause(self) -> Optional[int]:
        self._paused = True
        return self._command({"_pause": True})

    def resume(self) -> Optional[int]:
        self._paused = False
        return self._command({"_pause": False})

    def stop(self) -> Optional[int]:
        """Stop every worker at the same step; the run stays saved."""
        step = self._command({"_stop": True, "_pause": False})
        return step

    def _command(self, changes: dict, each: bool = False) -> Optional[int]:
        """Agree on the step where every worker applies `changes` (lab.control); returns it. With
        `each` (workers at their own pace: an async run's join) each worker applies them at its
        own next boundary and the earliest is returned. A change no worker would apply before the
        end is dropped (None; an elastic async worker that did all its steps still passes the end's
        boundary: lab.elastic.Guard.hold)."""
        if self.done:
            return None
        self._cmd += 1
        c = self.cluster
        proposals = c._call_all("propose", [(self.id, self._cmd, changes)] * c.workers)
        if any(p is None for p in proposals):
            self.poll()
            return None
        if each:
            late = min(proposals) >= self.cfg.steps   # (-1: a step no worker reaches)
            c._call_all("finalize", [(self.id, self._cmd, -1 if late else p) for p in proposals])
            return None if late else min(proposals)
        effective = max(proposals)
        late = effective >= self.cfg.steps
        c._call_all("finalize", [(self.id, self._cmd, -1 if late else effective)] * c.workers)
        return None if late else effective

    # -- saving -----------------------------------------------------------------------------
    def _save_meta(self) -> None:
        _write_json(self.path / "meta.json", self.meta)

    def _collect_pieces(self, rank: int, pieces: List[dict]) -> None:
        """Keep each worker's checkpoint pieces; save a step once every worker's piece of it is in."""
        for p in pieces:
            self._pieces.setdefault(int(p["step"]), {})[rank] = p
        complete = [s for s, got in self._pieces.items() if len(got) == self.cluster.workers]
        if complete:
            step = max(complete)
            self._save_checkpoint(checkpoints.combine(list(self._pieces[step].values())))
            self._pieces = {s: got for s, got in self._pieces.items() if s > step}

    def _save_checkpoint(self, ck: dict) -> None:
        import torch
        tmp = self.path / "checkpoint.pt.tmp"
        torch.save(ck, tmp)
        os.replace(tmp, self.path / "checkpoint.pt")  # atomic: a crash never leaves half a file


def seeds(cfg: RunConfig, workers: int) -> dict:
    """The seeds a run of `cfg` on `workers` workers trains with: `data.seed` (initial weights, shards,
    batch order) and each worker's torch seed the trainer derives from it (`lab.train.worker_seed`)."""
    from .train import worker_seed
    return {"data.seed": cfg.data.seed,
            "workers": {str(r): worker_seed(cfg.data.seed, r) for r in range(workers)}}


def load_run(path) -> RunData:
    """Reload a saved run (`runs/<id>`) with its config, records and metadata."""
    path = Path(path)
    if not (path / "config.json").exists():
        from .errors import ConfigError
        raise ConfigError("run path", "a directory holding config.json (a saved run under runs/)", str(path))
    cfg = RunConfig.from_dict(json.loads((path / "config.json").read_text()))
    meta = json.loads((path / "meta.json").read_text()) if (path / "meta.json").exists() else {}
    records = []
    if (path / "records.jsonl").exists():
        with open(path / "records.jsonl") as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError:
                        break  # a torn last line after a crash: keep what came before
    return RunData(path.name, cfg, records, meta, path)


def list_runs(runs_dir="runs") -> List[Path]:
    return sorted(p for p in Path(runs_dir).glob("*") if (p / "config.json").exists())


def _write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=records.jsonable))
    os.replace(tmp, path)


def _links(cluster, links) -> dict:
    """`run.set(link_mbps=...)` checked: {host name: Mbit/s or None}, or ConfigError (nothing changed)."""
    from .errors import check
    from .hosts import check_rates
    net = getattr(cluster, "net", None)
    check(net is not None, "link_mbps", "set only on a cluster started with hosts=N (real links)", links)
    check(isinstance(links, dict) and len(links) > 0, "link_mbps", "a dict {host name or index: Mbit/s}", links)
    hosts = [net[h].name for h in links]   # ConfigError for an unknown host
    return dict(zip(hosts, check_rates(len(links), list(links.values()))))
