"""GPU workers checked on a CPU machine (issue 12): planes, the device check, honest clocks, device figures.

What would fail on a GPU is caught here without one: `Comm`'s device-check mode (on for the whole
suite, tests/conftest.py) refuses a data-plane tensor off the worker's device and a control message
that is not a small CPU tensor on a group of its own; on a CPU worker, tensors a strategy makes
without naming a device land on "meta" (lab.devices.elsewhere), so a CPU clock all-reduced on the
data plane fails here as NCCL would refuse it there. The GPU runs themselves are tests/test_gpu.py.
"""
import os
import time

import pytest
import torch
import torch.distributed as dist

from lab import devices
from lab.comm import Comm, DeviceCheckError
from lab.config import RunConfig
from lab.errors import ConfigError
from lab.timing import clock_for

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="CPU-side checks (tests/test_gpu.py runs on GPUs)")


# -- honest clocks ---------------------------------------------------------------------------------
def test_cpu_clock_is_perf_counter():
    clock = clock_for("cpu")
    assert not clock.syncs and clock.kind == "perf_counter"
    a = clock.now()
    time.sleep(0.01)
    assert 0.009 < clock.now() - a < 1.0


def test_cuda_clock_synchronises_at_every_reading(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda d=None: calls.append(d))
    clock = clock_for(torch.device("cuda:1"))
    assert clock.syncs and "synchronize(cuda:1)" in clock.kind
    clock.now(), clock.now()
    assert calls == [torch.device("cuda:1")] * 2
    assert Comm(0, 1, device="cuda:0", check=False).clock.syncs   # Comm times with its device's clock
    assert not Comm(0, 1).clock.syncs and not Comm(0, 1, device="cuda:0").control.clock.syncs


# -- the device check ------------------------------------------------------------------------------
def test_check_follows_the_environment(monkeypatch):
    monkeypatch.setenv("LAB_DEVICE_CHECK", "1")
    assert Comm(0, 1).check and Comm(0, 1).control.check
    monkeypatch.setenv("LAB_DEVICE_CHECK", "0")
    assert not Comm(0, 1).check
    assert Comm(0, 1, check=True).check


@pytest.mark.parametrize("op", ["all_reduce", "all_gather", "broadcast", "gather", "reduce_scatter", "send", "recv",
                                "isend", "irecv"])
def test_a_cpu_tensor_on_a_gpu_workers_data_plane_fails(op):
    """torch.device('cuda:0') needs no GPU: every CPU tensor handed to that worker's data plane fails,
    which is exactly what NCCL does on a GPU machine."""
    comm = Comm(0, 2, device="cuda:0", check=True)
    args = {"broadcast": (0,), "gather": (0,), "send": (1,), "recv": (1,), "isend": (1,), "irecv": (1,)}.get(op, ())
    with pytest.raises(DeviceCheckError, match=r"on cpu, but this worker's device is cuda:0.*comm\.control"):
        getattr(comm, op)(torch.ones(3), *args)
    with pytest.raises(DeviceCheckError):
        comm.scatter(torch.ones(3), [torch.ones(3)] * 2, 0)


def test_the_control_plane_takes_small_cpu_tensors_on_a_group_of_its_own():
    sentinel = object()
    comm = Comm(0, 2, check=True, control=sentinel)
    assert comm.control.group is sentinel and comm.control.device.type == "cpu"
    with pytest.raises(DeviceCheckError, match="small CPU tensors"):
        comm.control.all_reduce(torch.ones(3, device="meta"))
    with pytest.raises(DeviceCheckError, match="small CPU tensors"):
        comm.control.all_reduce(torch.ones(10_000))
    with pytest.raises(DeviceCheckError, match="would run on the data group"):
        Comm(0, 2, check=True).control.all_reduce(torch.ones(1))  # no control group made beside it
    assert comm.control.ledger is comm.ledger and comm.control.link is comm.link  # one ledger, one link
    assert comm.fresh().control.group is sentinel and comm.fresh().ledger is not comm.ledger


def test_a_tensor_made_without_a_device_fails_the_check_on_a_cpu_worker():
    """lab.devices.elsewhere: what lands on the CPU beside a GPU lands on "meta" beside a CPU."""
    class Clocky:
        def __init__(self, comm, explicit):
            self.comm, self.explicit = comm, explicit

        def step(self, step):
            t = torch.tensor([1.0], device="cpu") if self.explicit else torch.tensor([1.0])
            return self.comm.all_reduce(t)

        attach = detach = load_state_dict = step

    comm = Comm(0, 1, check=True)
    with pytest.raises(DeviceCheckError, match="on meta, but this worker's device is cpu"):
        devices.elsewhere(Clocky(comm, explicit=False)).step(0)
    assert devices.elsewhere(Clocky(comm, explicit=True)).step(0).item() == 1.0
    opt = torch.optim.Adam([torch.nn.Parameter(torch.ones(2))])
    devices.elsewhere(Clocky(comm, True), opt)
    with torch.device("meta"):      # the optimizer's own step counters stay on the CPU
        opt.param_groups[0]["params"][0].grad = torch.ones(2, device="cpu")
        opt.step()
    assert opt.state[opt.param_groups[0]["params"][0]]["step"].device.type == "cpu"


def test_syncs_clock_origin_goes_through_the_control_plane(monkeypatch):
    """The bug of issue 12: sync all-reduced a CPU clock on the (NCCL) data group."""
    from lab.compression.owner import Compression
    from lab.strategies.base import WorkerContext
    from lab.strategies.gradients import GradientAverager
    seen = []
    monkeypatch.setattr(dist, "all_reduce", lambda t, op=None, group=None: seen.append((t.device.type, group)))
    control = object()
    cfg = RunConfig().strategy
    ctx = WorkerContext(rank=0, world=2, device=torch.device("cpu"), comm=Comm(0, 2, check=True, control=control))
    ctx.compression = Compression(cfg.compression)
    params = [torch.nn.Parameter(torch.ones(4))]
    with torch.device("meta"):  # as under lab.devices.elsewhere
        GradientAverager(params, cfg, ctx)
    assert seen == [("cpu", control)]


# -- device requests and fit: one line each, before anything starts ----------------------------------
def test_bad_device_requests_are_one_line():
    with pytest.raises(ConfigError, match=r"^device must be auto or cpu on this machine .*\(got 'cuda'\)$"):
        devices.check_request("cuda", gpus=0)
    with pytest.raises(ConfigError, match=r"N in \[0, 1\] \(2 GPUs here\)"):
        devices.check_request("cuda:2", gpus=2)
    with pytest.raises(ConfigError, match="one of auto, cpu, cuda, cuda:N"):
        devices.check_request("gpu", gpus=2)
    devices.check_request("cuda:1", gpus=2), devices.check_request("auto", gpus=0)


def test_cluster_start_refuses_cuda_without_cuda_before_starting_anything():
    from lab.cluster import Cluster
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as e:
        Cluster.start(2, device="cuda", cluster_id=f"h12-nocuda-{os.getpid()}", reuse=False)
    assert "\n" not in str(e.value) and time.perf_counter() - t0 < 2.0


def test_placement_and_data_plane():
    assert devices.placement("cuda", 2, 2) == (["cuda:0", "cuda:1"], "nccl")
    assert devices.placement("cuda", 4, 1) == (["cuda:0"] * 4, "gloo")
    assert devices.placement("cuda:1", 2, 2) == (["cuda:1"] * 2, "gloo")
    assert devices.placement("auto", 2, 0) == (["cpu", "cpu"], "gloo")
    assert devices.data_plane("nccl", "cuda:0") == "nccl"
    assert devices.data_plane("gloo", "cuda:0").startswith("gloo, host-staged all-gather")
    assert devices.data_plane("gloo", "cpu") == "gloo (cpu)"


def test_too_many_workers_per_gpu_is_one_line():
    from lab.fit import check_run_fits
    cfg = RunConfig()
    check_run_fits(cfg, [{"device": "cpu"}] * 2)  # CPU workers: nothing to check
    check_run_fits(cfg, [{"device": "cuda:0", "gpu_free_mb": 80_000.0}] * 4)
    with pytest.raises(ConfigError, match=r"^workers must be at most 1 per GPU .* on cuda:0 .*\(got '4 on cuda:0'\)$"):
        check_run_fits(cfg, [{"device": "cuda:0", "gpu_free_mb": 500.0}] * 4)


# -- per-device figures: "cpu" and n/a on the CPU, never invented ------------------------------------
def test_cpu_figures_are_not_invented():
    f = devices.figures("cpu")
    assert f == {"device": "cpu", "device_name": "cpu", "mem_mb": None, "mem_peak_mb": None, "util_pct": None}
    assert devices.na(None) == "n/a" and devices.na(12.3) == "12"
    meta = devices.run_devices([{"device": "cpu", "device_name": "cpu", "data_plane": "gloo (cpu)"}] * 2)
    assert meta["data_plane"] == "gloo (cpu)" and meta["devices"][1] == {"rank": 1, "device": "cpu", "device_name": "cpu"}
    s = devices.device_summary(meta, 1, [{"step": 0}])
    assert s == {"device": "cpu", "device_name": "cpu", "mem_mb": None, "mem_peak_mb": None, "util_pct": None}
    gpu = devices.device_summary({"devices": [{"rank": 0, "device": "cuda:0", "device_name": "H"}]}, 0,
                                 [{"mem_mb": 5.0, "mem_peak_mb": 9.0, "util_pct": 40.0},
                                  {"mem_mb": 6.0, "mem_peak_mb": 8.0, "util_pct": None}])
    assert (gpu["mem_mb"], gpu["mem_peak_mb"], gpu["util_pct"]) == (6.0, 9.0, 40.0)


# -- every strategy and compressor under the check, on a real gloo group ------------------------------
def _planes(trainer):
    comm = trainer.ctx.comm
    return {"check": comm.check, "separate": comm.control.separate, "plane": comm.data_plane}


COMPRESSORS = ["none", "fp16", "topk", "powersgd"]


@pytest.fixture(scope="module")
def group():
    from lab.procs import Group
    assert os.environ.get("LAB_DEVICE_CHECK") == "1"  # set by tests/conftest.py before any worker starts
    with Group(2, timeout=120) as g:
        yield g


@pytest.mark.parametrize("name", ["sync", "ps", "async", "ssp", "local", "gossip", "diloco"])
def test_every_strategy_and_compressor_passes_the_device_check(group, name):
    from lab.procs import train
    base = RunConfig(steps=3, eval_every=10**6, checkpoint_every=10**6).replace(**{
        "data.name": "digits", "model.name": "mlp", "strategy.name": name})
    for comp in COMPRESSORS:
        if comp != "none" and name not in ("sync", "ps", "async", "ssp"):
            continue  # compressors ride on gradient and server strategies
        cfg = base.replace(**{"strategy.compression.name": comp}) if comp != "none" else base
        outs = train(cfg, group, probe=_planes)
        assert all(len(o["records"]) == 3 for o in outs), (name, comp)
        assert outs[0]["probe"] == {"check": True, "separate": True, "plane": "gloo (cpu)"}
