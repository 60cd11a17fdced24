"""How the lab starts its engines: ipyparallel's local launcher, with the engines in one scheduling group.

ipyparallel starts each engine in a session of its own (`start_new_session=True`, so a terminal's
Ctrl-C is not forwarded to it). On Linux every session is also a scheduling group of its own
(autogroup, `kernel.sched_autogroup_enabled`): the CPU is shared fairly between *groups* first.
With more engines than cores that costs collectives dearly: an engine that just computed a step
has used its group's share, and when a message wakes it, it waits behind the other groups.
`scripts/host-probe.py --workers 8 [--own-sessions]` measures it side by side: a 6 kB all-gather
over 8 engines on 2 cores right after a step's compute, with a session per engine and in one.

So the lab starts engines the way torchrun and torch.multiprocessing start workers: in the
session of the process that starts them (one group, threads scheduled one by one), each in a
process group of its own (`process_group=0`), which keeps a terminal's Ctrl-C away from them as
before. Hosts (`lab.hosts`) run each engine inside its network namespace: `ip netns exec NS ...`
before the engine's command (it execs the engine: the launcher's pid is the engine's).
"""
from __future__ import annotations

import subprocess
import threading

import ipyparallel.cluster.launcher as _ipp
from traitlets import Bool as _TBool, List as _TList, Unicode as _TUnicode

_PATCH = threading.Lock()


class _SameSessionPopen(subprocess.Popen):
    """Popen that keeps the child in its parent's session, in a process group of its own."""

    def __init__(self, *args, start_new_session: bool = False, **kw):
        kw.setdefault("process_group", 0)
        super().__init__(*args, **kw)


class OneSessionEngineLauncher(_ipp.LocalEngineLauncher):
    """ipyparallel's local engine launcher, the engine left in the starting process's session."""
    one_session = _TBool(True, config=True, help="False: a session (and scheduling group) per engine, "
                                                 "as ipyparallel does (`scripts/host-probe.py --own-sessions`)")

    def start(self):
        if not self.one_session:
            return super().start()
        # ipyparallel calls the `Popen` of its launcher module with start_new_session=True; for
        # this one call it gets ours (a lock: launchers start one by one, but a thread may not wait)
        with _PATCH:
            saved, _ipp.Popen = _ipp.Popen, _SameSessionPopen
            try:
                return super().start()
            finally:
                _ipp.Popen = saved


class OneSessionEngineSetLauncher(_ipp.LocalEngineSetLauncher):
    """n local engines in one session (use as ipyparallel's `engine_launcher_class`)."""
    launcher_class = OneSessionEngineLauncher
    # what the cluster file records, for `Cluster.from_file` (reconnecting after a kernel restart):
    # ipyparallel would write "module:Class", which only its entry points resolve; a dotted path imports
    entrypoint_name = f"{__name__}.OneSessionEngineSetLauncher"


class NetnsEngineLauncher(OneSessionEngineLauncher):
    """The engine's command run inside a host: `ip netns exec NS ...` (which execs the engine)."""

    def find_args(self):
        nss = list(getattr(self.parent, "namespaces", None) or [])
        pre = ["ip", "netns", "exec", nss[int(self.identifier) % len(nss)]] if nss else []
        return pre + super().find_args()


class NetnsEngineSetLauncher(OneSessionEngineSetLauncher):
    """Engine i runs in host `namespaces[i % len(namespaces)]`; use as ipyparallel's
    `engine_launcher_class` with `c.NetnsEngineSetLauncher.namespaces = [...]`."""
    launcher_class = NetnsEngineLauncher
    entrypoint_name = f"{__name__}.NetnsEngineSetLauncher"
    namespaces = _TList(_TUnicode(), config=True, help="the hosts' network namespaces, engine i in [i % n]")
