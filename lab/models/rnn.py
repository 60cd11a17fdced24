"""The seeds' character RNN: Embedding 64, LSTM (or GRU) 128, Dense vocab (chapter 03).

`forward(x)` maps (batch, seq) character ids to (batch, seq, vocab) logits, which is all
training needs; `generate` samples new text one character at a time, carrying the recurrent
state, and uses the vocabulary (`itos`) the model keeps from the task's spec.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..errors import check
from . import model


class CharRNN(nn.Module):
    """Embedding -> LSTM / GRU -> Linear over the vocabulary.

    Args:
        itos: the vocabulary, id -> character (from `task.spec["itos"]`).
        cell: "lstm" or "gru".
        embed, hidden: the seeds' sizes, 64 and 128.
    """

    def __init__(self, itos, cell: str = "lstm", embed: int = 64, hidden: int = 128):
        super().__init__()
        self.itos = list(itos)
        self.stoi = {c: i for i, c in enumerate(self.itos)}
        self.embed = nn.Embedding(len(self.itos), embed)
        self.rnn = (nn.LSTM if cell == "lstm" else nn.GRU)(embed, hidden, batch_first=True)
        self.head = nn.Linear(hidden, len(self.itos))

    def step(self, x, state=None):
        """(logits (batch, seq, vocab), new recurrent state) from ids and an optional state."""
        out, state = self.rnn(self.embed(x), state)
        return self.head(out), state

    def forward(self, x):
        return self.step(x)[0]

    @torch.no_grad()
    def generate(self, prompt: str = "", length: int = 200, temperature: float = 1.0,
                 seed: Optional[int] = None) -> str:
        """Sample `length` new characters that continue `prompt`.

        Args:
            prompt: text to start from; characters outside the vocabulary are skipped, and an
                empty (or all-unknown) prompt starts from a newline (or the first character).
            length: how many new characters to return (exactly that many).
            temperature: divides the logits; < 1 is more conservative, > 1 more surprising,
                0 always picks the most likely character.
            seed: makes sampling reproducible.
        Returns:
            the `length` new characters only (not the prompt).

        Example:
            >>> model.generate("def ", length=80, temperature=0.8)
        """
        check(isinstance(length, int) and length >= 0, "length", "an integer >= 0", length)
        check(isinstance(temperature, (int, float)) and temperature >= 0, "temperature", "a number >= 0", temperature)
        ids = [self.stoi[c] for c in prompt if c in self.stoi]
        if not ids:
            ids = [self.stoi.get("\n", 0)]
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        was = self.training
        self.eval()
        device = self.head.weight.device
        x, state, out = torch.tensor([ids], device=device), None, []
        for _ in range(length):
            logits, state = self.step(x, state)
            logits = logits[0, -1].float().cpu()
            if temperature == 0:
                nxt = int(logits.argmax())
            else:
                nxt = int(torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=g))
            out.append(self.itos[nxt])
            x = torch.tensor([[nxt]], device=device)  # only the new character: the state holds the rest
        self.train(was)
        return "".join(out)


@model("lstm", kinds=("language",))
def lstm(spec, cfg):
    return CharRNN(spec["itos"], "lstm")


@model("gru", kinds=("language",))
def gru(spec, cfg):
    return CharRNN(spec["itos"], "gru")
