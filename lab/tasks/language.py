"""Character-level language modelling: next-character cross-entropy, held-out perplexity (chapter 03).

The text is split once: the head is for training, the tail (`test_fraction`) is held out, so
test text is never seen in training and no sequence straddles the two. Each worker trains on
its own contiguous slice of the head (contiguous, so sequences stay real text).
"""
from __future__ import annotations

import math
from typing import Dict

import torch
import torch.nn.functional as F

from ..data.text import CharVocab, load_text
from ..errors import check
from ..metrics import perplexity
from . import Task, task

EVAL_CHARS = 20_000  # held-out characters scored by `evaluate`: bounded cost, stable to ~1%


class LanguageTask(Task):
    """Predict each next character of a text.

    Args:
        text: the whole text (train head + held-out tail).
        seq_len: characters per training sequence (inputs; targets are the same shifted by one).
        test_fraction: share of the text (its tail) held out for `evaluate`.
        seed: seeds the order of each worker's sequences.
        eval_chars: at most this many held-out characters are scored by `evaluate`.

    Example:
        >>> task = LanguageTask(lab.data.text.default_text(), seq_len=64)
        >>> x, y = next(task.batches(rank=0, world=2, batch_size=32))   # (32, 64) ids each
        >>> task.spec["vocab_size"], task.evaluate(model)["perplexity"]
    """
    kind = "language"
    unit = "tokens"

    def __init__(self, text: str, seq_len: int = 64, test_fraction: float = 0.1, seed: int = 0,
                 eval_chars: int = EVAL_CHARS):
        self.vocab = CharVocab(text)
        ids = self.vocab.encode(text)
        cut = int(len(ids) * (1 - test_fraction))
        self.train_ids, self.test_ids = ids[:cut], ids[cut:]
        self.seq_len, self.seed, self.eval_chars = seq_len, seed, eval_chars
        check(len(self.test_ids) > seq_len, "seq_len",
              f"shorter than the held-out text ({len(self.test_ids)} characters; use a longer text or a larger test_fraction)", seq_len)
        self.spec = {"vocab_size": len(self.vocab), "itos": list(self.vocab.itos), "seq_len": seq_len}

    def shard(self, rank: int, world: int) -> torch.Tensor:
        """Worker `rank`'s contiguous slice of the training text; slices are disjoint and cover it."""
        n = len(self.train_ids)
        return self.train_ids[rank * n // world:(rank + 1) * n // world]

    def batches(self, rank, world, batch_size):
        """Endless epochs of (inputs, targets), each (batch, seq_len) int64, from this worker's shard.

        Each epoch cuts the shard into non-overlapping windows from a random offset (so window
        borders move between epochs) and shuffles them; seeded by (seed, rank). `batch_size`
        may be a callable returning the current size, so it can change mid-run.
        """
        data, L = self.shard(rank, world), self.seq_len
        check(len(data) > L + 1, "seq_len", f"shorter than each worker's text shard ({len(data)} characters with {world} workers)", L)
        g = torch.Generator().manual_seed(self.seed * 1000 + rank)
        size = batch_size if callable(batch_size) else (lambda: batch_size)
        while True:
            offset = int(torch.randint(0, L, (1,), generator=g)) if len(data) > 2 * L + 1 else 0
            starts = torch.arange(offset, len(data) - L, L)
            starts = starts[torch.randperm(len(starts), generator=g)]
            pos = 0
            while pos < len(starts):
                n = size()
                b = starts[pos:pos + n]
                if len(b) < n and pos > 0:  # drop the ragged tail: every step sees the same size
                    break
                pos += len(b)
                windows = torch.stack([data[s:s + L + 1] for s in b.tolist()])
                yield windows[:, :-1], windows[:, 1:]

    def to(self, device, dtype=None):
        """Token ids stay int64; only their device changes."""
        self.train_ids, self.test_ids = self.train_ids.to(device), self.test_ids.to(device)
        return self

    def loss(self, model, batch):
        x, y = batch
        logits = model(x)  # (batch, seq_len, vocab)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)), y.numel(), {}

    def eval_windows(self):
        """(inputs, targets) of the held-out text, capped at `eval_chars`, cut into seq_len windows."""
        L = self.seq_len
        n = min(len(self.test_ids) - 1, self.eval_chars) // L * L  # whole windows only
        return self.test_ids[:n].reshape(-1, L), self.test_ids[1:n + 1].reshape(-1, L)

    @torch.no_grad()
    def evaluate(self, model, batch: int = 256) -> Dict[str, float]:
        """{"test_loss": nats per character, "perplexity": exp(test_loss)} on held-out text.

        Scored in windows of `seq_len` from a fresh state, exactly like training, so the test
        loss is comparable with the training loss on the same plot.
        """
        x, y = self.eval_windows()
        was = model.training
        model.eval()
        total = 0.0
        for i in range(0, len(x), batch):
            logits = model(x[i:i + batch])
            total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]).double(), y[i:i + batch].reshape(-1), reduction="sum").item()
        model.train(was)
        loss = total / y.numel()
        return {"test_loss": loss, "perplexity": perplexity(loss)}

    def unigram_perplexity(self) -> float:
        """The baseline to beat: perplexity of character frequencies on the same held-out targets."""
        return unigram_perplexity(self.train_ids, self.eval_windows()[1], len(self.vocab))


def unigram_perplexity(train_ids, test_ids, vocab_size: int) -> float:
    """Perplexity on `test_ids` of a model that ignores context: p(c) = frequency of c in training.

    Counts are add-one smoothed, so a character unseen in training costs a lot but is not infinite.

    Example:
        >>> unigram_perplexity(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1]), 2)
        2.0
    """
    counts = torch.bincount(torch.as_tensor(train_ids).reshape(-1), minlength=vocab_size).double() + 1
    logp = (counts / counts.sum()).log()
    return float(math.exp(-logp[torch.as_tensor(test_ids).reshape(-1)].mean().item()))


@task("text", kind="language")
def text_task(cfg, dtype=torch.float32):
    """DataConfig -> LanguageTask over `cfg.path` (or Python's help text); `dtype` is unused (ids)."""
    return LanguageTask(load_text(cfg.path), seq_len=cfg.seq_len, test_fraction=cfg.test_fraction, seed=cfg.seed)
