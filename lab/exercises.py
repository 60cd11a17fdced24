"""Checkable exercises: tell a learner whether an answer is right, or give a hint, never the answer.

    from lab.exercises import check
    check("04.ring-bytes", lambda n, B: 2 * (n - 1) / n * B)
    # ✓ 04.ring-bytes: right.

Each exercise is an id ("NN.name", NN the chapter), a question, a checker and hints. A checker
takes the answer and returns True (right) or False (wrong); it raises `TypeError` when the answer
has the wrong kind, and the learner gets a hint about the form instead. An answer of `None` means
"not answered yet": `check` prints the question and the first hint, so a chapter's exercise cell
runs unchanged. Every wrong attempt shows the next hint. The right answers are computed from the
lab's own code (`lab.ring.simulate`, the compressors, `torch.nn`) wherever the lab has it, not
copied here.

Adding one (a chapter's exercises, a few lines):

    @exercise("04.ring-bytes", "question text ...", hints=["first hint", "second hint"])
    def _(answer):
        return number_or_function(answer, truth, points=[(2, 8.0), (5, 1000.0)], given=(8, 4e6))
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

from .errors import check_choice


@dataclass
class Exercise:
    id: str
    question: str
    checker: Callable[[object], bool]
    hints: List[str]
    form: str = "a number"   # what kind of answer is expected (shown when the kind is wrong)
    attempts: int = field(default=0, repr=False)

    def hint(self) -> str:
        return self.hints[min(self.attempts, len(self.hints)) - 1] if self.attempts else self.hints[0]


EXERCISES: Dict[str, Exercise] = {}


def exercise(id: str, question: str, hints: Sequence[str], form: str = "a number"):
    """Register the decorated checker `fn(answer) -> bool` as exercise `id`."""
    def deco(fn):
        assert hints, f"exercise {id} needs at least one hint"
        EXERCISES[id] = Exercise(id, question, fn, list(hints), form)
        return fn
    return deco


def question(exercise_id: str) -> str:
    """The exercise's question (ConfigError naming the valid ids when it does not exist)."""
    return _get(exercise_id).question


def _get(exercise_id: str) -> Exercise:
    check_choice(exercise_id, EXERCISES, "exercise_id")
    return EXERCISES[exercise_id]


def check(exercise_id: str, answer) -> Optional[bool]:
    """Print whether `answer` is right, or a hint; return True / False (None when not answered yet)."""
    ex = _get(exercise_id)
    if answer is None or answer is Ellipsis:
        print(f"… {ex.id}: not answered yet. {ex.question}\n  Replace the placeholder with {ex.form}. "
              f"Hint: {ex.hints[0]}")
        return None
    try:
        ok = bool(ex.checker(answer))
    except (TypeError, ValueError) as e:
        print(f"✗ {ex.id}: expected {ex.form} ({type(e).__name__}: {e}). Hint: {ex.hints[0]}")
        return False
    if ok:
        ex.attempts = 0
        print(f"✓ {ex.id}: right.")
        return True
    ex.attempts += 1
    print(f"✗ {ex.id}: not yet. Hint: {ex.hint()}")
    return False


# -- helpers for checkers ---------------------------------------------------------------------
def close(a, b, rel: float = 1e-3, abs_: float = 1e-9) -> bool:
    return math.isclose(float(a), float(b), rel_tol=rel, abs_tol=abs_)


def as_number(answer) -> float:
    """The answer as a float; TypeError for anything that is not a real number (bools included)."""
    if isinstance(answer, bool) or not isinstance(answer, numbers.Real):
        try:  # a 0-d tensor or numpy scalar
            if getattr(answer, "ndim", None) == 0 or getattr(answer, "shape", None) == ():
                return float(answer)
        except Exception:
            pass
        raise TypeError(f"got {type(answer).__name__}")
    return float(answer)


def number_or_function(answer, truth: Callable, points: Sequence[tuple], given: tuple,
                       rel: float = 1e-3) -> bool:
    """Right if `answer` is a number equal to truth(*given), or a function equal to truth at `points`."""
    if callable(answer):
        return all(close(as_number(answer(*p)), truth(*p), rel) for p in (*points, given))
    return close(as_number(answer), truth(*given), rel)


# -- the exercises, by chapter ----------------------------------------------------------------
def _ring_bytes_sent(n: int, B: float) -> float:
    """Bytes worker 0 sends in a ring all-reduce, counted from the messages of `lab.ring.simulate`."""
    import torch
    from .ring import simulate
    if n == 1:
        return 0.0
    # one element of `unit` bytes per chunk keeps the simulation tiny and the chunks equal
    _, log = simulate([torch.zeros(n) for _ in range(n)])
    per_element = sum(b for (_, _, src, _, _, b) in log if src == 0) / (n * 4)  # bytes per byte of payload
    return per_element * B


@exercise("00.ring-ratio",
          "This chapter trains with 2 workers. With 3 workers and the same model, each worker sends "
          "how many times the bytes per step it sent with 2 (ignore the few bytes besides the gradient)?",
          hints=["Exercise 1 of chapter 00 (and lab/comm.py's docstring) gives a ring all-reduce's bytes per worker.",
                 "Write the per-worker bytes for n = 3 and for n = 2 with the same B, and divide."])
def _(answer):
    return close(as_number(answer), _ring_bytes_sent(3, 1.0) / _ring_bytes_sent(2, 1.0))


def _reduce_scatter_bytes_sent(n: int, B: float) -> float:
    """Bytes worker 0 sends in a ring reduce-scatter: the first phase of `lab.ring.simulate`'s messages."""
    import torch
    from .ring import simulate
    if n == 1:
        return 0.0
    _, log = simulate([torch.zeros(n) for _ in range(n)])
    return sum(b for (_, phase, src, _, _, b) in log if src == 0 and phase == "reduce-scatter") / (n * 4) * B


@exercise("03b.reduce-scatter-bytes",
          "In a ring reduce-scatter over n workers of a tensor of B bytes on each, how many bytes does each "
          "worker send? Answer with a function of (n, B), or with the number for n = 8 and B = 4,000,000.",
          hints=["Each worker's tensor is cut into n chunks of B / n bytes; each ends summed on one worker.",
                 "The ring takes n - 1 steps, and in each step every worker sends exactly one chunk."],
          form="a number or a function f(n, B)")
def _(answer):
    return number_or_function(answer, _reduce_scatter_bytes_sent, points=[(2, 8.0), (3, 900.0), (5, 1000.0)],
                              given=(8, 4e6))


@exercise("04.ring-bytes",
          "In a ring all-reduce over n workers of a tensor of B bytes on each, how many bytes does each "
          "worker send? Answer with a function of (n, B), or with the number for n = 8 and B = 4,000,000 "
          "(a million fp32 gradients).",
          hints=["Each worker's tensor is cut into n chunks; count how many chunks each worker sends.",
                 "There are two phases (reduce-scatter, then all-gather); each takes n - 1 steps.",
                 "In every step each worker sends exactly one chunk of B / n bytes."],
          form="a number or a function f(n, B)")
def _(answer):
    return number_or_function(answer, _ring_bytes_sent, points=[(2, 8.0), (3, 900.0), (5, 1000.0)],
                              given=(8, 4e6))


def _topk_payload_bytes(numel: int, ratio: float) -> int:
    """The bytes `lab.compression`'s topk hands to the collective for one fp32 tensor."""
    import torch
    from .compression import COMPRESSORS
    from .compression.base import nbytes
    from .config import CompressionConfig
    comp = COMPRESSORS.build("topk", CompressionConfig(name="topk", ratio=ratio))
    payload, _ = comp.compress(torch.randn(numel), "w")
    return nbytes(payload)


@exercise("07.topk-bytes",
          "The lab's top-k keeps 1% of a layer's gradient (ratio 0.01). For one layer of 100,000 fp32 "
          "gradients, how many bytes is its payload, everything it hands to the collective? (Compare it "
          "with the 400,000 bytes of the gradient itself.)",
          hints=["k = ratio * numel entries travel; each needs its value and where it goes.",
                 "Read lab/compression/topk.py: which dtype are the values, which the indices?"])
def _(answer):
    return close(as_number(answer), _topk_payload_bytes(100_000, 0.01), rel=1e-6)


def _link_seconds(n: int, B: float, mbps: float) -> float:
    """What a link of `mbps` costs one worker of a ring all-reduce of B bytes: the ring's bytes
    (`lab.ring.simulate`) at the link's rate (`lab.link.LinkConfig`), framing left out."""
    from .link import LinkConfig
    return LinkConfig(bandwidth_mbps=mbps).seconds(int(round(_ring_bytes_sent(n, B))), messages=0)


@exercise("07b.link-seconds",
          "Four hosts on 10 Mbit/s links train with fp32 sync; the gradients are B = 291,368 bytes. How many "
          "seconds per step does the link alone cost each worker (one ring all-reduce, the transport's "
          "framing left out)? Answer with a function of (n, B, mbps), or with the number for n = 4, "
          "B = 291,368, mbps = 10.",
          hints=["First the bytes each worker sends in a ring all-reduce (chapter 04).",
                 "A link of R Mbit/s moves R * 1e6 bits a second; a byte is 8 bits.",
                 "Sends and receives go both ways at once on a full-duplex link: count only what one worker sends."],
          form="a number or a function f(n, B, mbps)")
def _(answer):
    return number_or_function(answer, _link_seconds, points=[(2, 8000.0, 1.0), (3, 9000.0, 100.0)],
                              given=(4, 291_368, 10.0))


def _talk_bytes_sent(n: int, T: int, N: int, d: int) -> float:
    """Bytes one agent of chapter 10b sends per step: the size of `lab.tasks.talk.pack`'s message, to n - 1 peers."""
    import numpy as np
    from .tasks.talk import pack
    msg = pack(np.zeros((T * N, d), np.float32), np.zeros(T * N, np.int64), np.zeros(T * N, np.float32))
    return float((n - 1) * msg.numel() * msg.element_size())


@exercise("10b.talk-bytes",
          "Each talking agent of chapter 10b sends its rollout to every peer each step. With n agents, "
          "T rollout steps, N environments per agent and d numbers per observation, how many bytes does "
          "one agent send per step? Answer with a function of (n, T, N, d), or with the number for "
          "n = 4, T = 16, N = 2, d = 4.",
          hints=["One message holds a row per environment step of the rollout; what is in a row (lab/tasks/talk.py, pack)?",
                 "Rows are float32; an agent sends one message to each of its peers."],
          form="a number or a function f(n, T, N, d)")
def _(answer):
    return number_or_function(answer, _talk_bytes_sent, points=[(2, 1, 1, 4), (3, 16, 2, 4), (5, 8, 3, 6)],
                              given=(4, 16, 2, 4))


@exercise("01.xavier-std",
          "Xavier (Glorot) normal initialisation draws a linear layer's weights from N(0, std^2). What is std "
          "for a 64 -> 64 layer (fan_in = fan_out = 64)? Answer with the number, or a function of (fan_in, fan_out).",
          hints=["Xavier keeps the signal's variance the same forwards and backwards: it averages what each "
                 "direction needs (1 / fan_in and 1 / fan_out).",
                 "The variance is 2 / (something); the answer is a standard deviation, not a variance."],
          form="a number or a function f(fan_in, fan_out)")
def _(answer):
    return number_or_function(answer, _xavier_std, points=[(10, 30), (784, 64)], given=(64, 64), rel=1e-4)


def _xavier_std(fan_in: int, fan_out: int) -> float:
    """torch's own xavier_normal_, read back: the same generator state gives std * a standard normal."""
    import torch
    w = torch.empty(fan_out, fan_in)
    torch.nn.init.xavier_normal_(w, generator=torch.Generator().manual_seed(0))
    z = torch.randn(fan_out, fan_in, generator=torch.Generator().manual_seed(0))
    return float((w * z).sum() / (z * z).sum())


def _n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


@exercise("02.conv-params",
          "How many parameters (weights and biases) has the first convolution of a CNN on grey digits, "
          "nn.Conv2d(1, 32, kernel_size=3)? Answer with the number, or a function of (c_in, c_out, k).",
          hints=["Each of the c_out filters sees every input channel through a k x k window.",
                 "Don't forget that every output channel has one bias."],
          form="a number or a function f(c_in, c_out, k)")
def _(answer):
    import torch
    truth = lambda c_in, c_out, k: _n_params(torch.nn.Conv2d(int(c_in), int(c_out), int(k)))
    return number_or_function(answer, truth, points=[(3, 64, 5), (32, 64, 3)], given=(1, 32, 3), rel=1e-9)


@exercise("03.lstm-params",
          "How many parameters has one LSTM layer, nn.LSTM(input_size=64, hidden_size=128)? "
          "Answer with the number, or a function of (input_size, hidden_size).",
          hints=["An LSTM has four gates; each is a linear map of the input and of the previous hidden state.",
                 "Count the weight matrices' shapes (input -> 4 x hidden, hidden -> 4 x hidden); torch's "
                 "LSTM has two bias vectors per gate, not one."],
          form="a number or a function f(input_size, hidden_size)")
def _(answer):
    import torch
    truth = lambda i, h: _n_params(torch.nn.LSTM(int(i), int(h)))
    return number_or_function(answer, truth, points=[(10, 20), (128, 32)], given=(64, 128), rel=1e-9)


@exercise("05.ps-bytes",
          "A synchronous parameter server lives on worker 0 of n workers (it is a worker too). How many bytes "
          "cross the server's link per step, sent plus received, for a model of B bytes? Answer with a "
          "function of (n, B), or the number for n = 8 and B = 4,000,000.",
          hints=["Worker 0 computes its own gradient: only the other workers push and pull.",
                 "Each other worker sends one gradient in and gets one copy of the parameters back."],
          form="a number or a function f(n, B)")
def _(answer):
    from .strategies.ps import ParameterServer
    truth = lambda n, B: sum(ParameterServer.traffic(None, 0, int(n), B))
    return number_or_function(answer, truth, points=[(2, 10.0), (4, 1000.0)], given=(8, 4e6))


@exercise("06.wait-share",
          "Four workers take 1.0, 1.1, 0.9 and 3.0 seconds to compute one step's gradient. Under sync, "
          "every step waits for the slowest. What fraction of the workers' time (all four together) is "
          "spent waiting? Answer a number between 0 and 1.",
          hints=["A synchronous step lasts as long as its slowest worker; the others wait the difference.",
                 "Add up the four waits and divide by four times the step's length."])
def _(answer):
    times = [1.0, 1.1, 0.9, 3.0]
    step = max(times)
    return close(as_number(answer), sum(step - t for t in times) / (len(times) * step), rel=1e-3)


@exercise("08.local-bytes",
          "Local SGD over n workers averages the parameters (a ring all-reduce of B bytes) every H steps and "
          "sends nothing in between. Per step, on average, how many bytes does each worker send? Answer with "
          "a function of (n, B, H), or the number for n = 4, B = 4,000,000 and H = 8.",
          hints=["Start from what one ring all-reduce costs each worker (chapter 04).",
                 "That cost is paid once every H steps."],
          form="a number or a function f(n, B, H)")
def _(answer):
    truth = lambda n, B, H: _ring_bytes_sent(int(n), B) / H
    return number_or_function(answer, truth, points=[(2, 100.0, 1), (8, 1e6, 32)], given=(4, 4e6, 8))


@exercise("09.bubble",
          "A GPipe schedule with 4 equal stages runs 8 micro-batches per step. What fraction of the "
          "stages' time is idle (the bubble)? Answer with the number, or a function of (stages, micro).",
          hints=["Draw the schedule: stage s starts s time slots late and finishes s slots early (forward), "
                 "and the backward pass mirrors it.",
                 "Count the slots each stage is busy against the slots the whole step takes."],
          form="a number or a function f(stages, micro)")
def _(answer):
    from .parallel.pipeline import bubble
    return number_or_function(answer, lambda s, m: bubble(int(s), int(m)), points=[(2, 1), (3, 4)], given=(4, 8))


@exercise("10.return",
          "A CartPole episode lasts T = 10 steps (reward +1 each). With discount gamma = 0.99, what is the "
          "discounted return G_0 seen from the first step? Answer with the number, or a function of (T, gamma).",
          hints=["G_0 = r_0 + gamma r_1 + gamma^2 r_2 + ..., one term per step of the episode.",
                 "That is a geometric series with T terms."],
          form="a number or a function f(T, gamma)")
def _(answer):
    from .agents.reinforce import returns_to_go
    truth = lambda T, gamma: float(returns_to_go([1.0] * int(T), gamma)[0])
    return number_or_function(answer, truth, points=[(1, 0.5), (50, 0.9)], given=(10, 0.99), rel=1e-5)


@exercise("11.steps-redone",
          "A run saves a checkpoint after every 20th step (steps 20, 40, ...). A worker dies right after "
          "finishing step 57. The run resumes from the latest checkpoint: how many steps are computed twice?",
          hints=["Which checkpoint is the latest one written before the failure?",
                 "Everything after that checkpoint and up to the failure is lost and redone."])
def _(answer):
    every, done = 20, 57
    return close(as_number(answer), done - max(s for s in range(0, done + 1, every)), rel=0, abs_=1e-9)


@exercise("12.crossover",
          "Two configurations reach the target accuracy: A in 200 steps sending 8 MB per step, B in 300 steps "
          "sending 0.2 MB per step; both compute for 0.05 s per step and communication does not overlap "
          "compute. At what link bandwidth, in MB/s, do they take the same time to the target?",
          hints=["Time to target = steps x (compute per step + bytes per step / bandwidth).",
                 "Set the two times equal and solve for the bandwidth: it is a linear equation in 1 / bandwidth."])
def _(answer):
    t = lambda steps, mb, bw: steps * (0.05 + mb / bw)
    lo, hi = 1e-3, 1e6  # bisection on A's time minus B's (positive at low bandwidth, negative at high)
    for _ in range(200):
        mid = (lo * hi) ** 0.5
        lo, hi = (mid, hi) if t(200, 8, mid) > t(300, 0.2, mid) else (lo, mid)
    return close(as_number(answer), lo, rel=1e-3)


@exercise("13.ring-seconds",
          "With the alpha-beta model, how many seconds per step does a ring all-reduce of B = 4,000,000 bytes "
          "take over n = 8 workers, with alpha = 0.0001 s per message and beta = 12,500,000 bytes/s? Answer "
          "with the number, or a function of (n, B, alpha, beta).",
          hints=["Count the ring's messages per worker per step, and its bytes per worker (chapter 13's table).",
                 "time = alpha x messages + bytes / beta, with 2(n-1) messages and 2(n-1)/n x B bytes."],
          form="a number or a function f(n, B, alpha, beta)")
def _(answer):
    from .costmodel import AlphaBeta
    truth = lambda n, B, alpha, beta: AlphaBeta(alpha, beta).predict("ring", int(n), B)
    return number_or_function(answer, truth, points=[(2, 1000.0, 0.001, 1e6), (5, 8e6, 0.0, 1e9)],
                              given=(8, 4e6, 1e-4, 12.5e6), rel=1e-6)


@exercise("14.asha-steps",
          "Successive halving with 27 trials of 90 steps each, rungs at 10, 30 and 90 steps, reduction "
          "factor 3: at each rung only the best third go on, and every trial stops exactly at its rung. "
          "How many steps do all the trials train together (a full grid would train 27 x 90 = 2430)?",
          hints=["27 trials train to the first rung; how many of them train on to the second, and to the third?",
                 "Add up: 27 trials x 10 steps, then 9 trials x (30 - 10) more, then 3 trials x (90 - 30) more."])
def _(answer):
    trials, rungs, eta = 27, (10, 30, 90), 3
    total, alive, done = 0, trials, 0
    for r in rungs:
        total += alive * (r - done)
        alive, done = alive // eta, r
    return close(as_number(answer), total, rel=0, abs_=1e-9)
