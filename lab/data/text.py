"""Text for character-level language models (chapter 03, RNN text generation).

By default the English documentation that ships inside Python (`pydoc_data.topics`, about 460k
characters: prose about the language with code examples), so the chapter needs no download;
or any UTF-8 text file given as `DataConfig.path`.
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional

import torch

from ..errors import ConfigError


def default_text() -> str:
    """Python's own help topics joined in a fixed (sorted) order, so every worker sees the same text."""
    from pydoc_data.topics import topics
    return "\n".join(topics[k] for k in sorted(topics))


def load_text(path: Optional[str] = None) -> str:
    """The text at `path` (UTF-8), or `default_text()` when `path` is None.

    Raises:
        ConfigError: one line naming `path` when the file is missing, a directory, empty or not text.
    """
    if path is None:
        return default_text()
    path = os.path.expanduser(str(path))
    if not os.path.exists(path):
        raise ConfigError("path", "an existing text file", path)
    if os.path.isdir(path):
        raise ConfigError("path", "a text file, not a directory", path)
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8-sig")  # -sig: drop a byte-order mark, common in Windows files
    except UnicodeDecodeError:
        raise ConfigError("path", "a UTF-8 text file, not binary data", path) from None
    if "\x00" in text:  # valid UTF-8 but binary (NUL bytes never occur in text)
        raise ConfigError("path", "a UTF-8 text file, not binary data", path)
    if not text.strip():
        raise ConfigError("path", "a non-empty text file", path)
    return text


class CharVocab:
    """The characters of a text, sorted: `stoi` maps a character to its id, `itos` the reverse.

    Example:
        >>> v = CharVocab("hello")
        >>> v.itos, v.encode("he").tolist(), v.decode([2, 3])
        (['e', 'h', 'l', 'o'], [1, 0], 'lo')
    """

    def __init__(self, text: str):
        self.itos: List[str] = sorted(set(text))
        self.stoi: Dict[str, int] = {c: i for i, c in enumerate(self.itos)}

    def __len__(self):
        return len(self.itos)

    def encode(self, text: str) -> torch.Tensor:
        """int64 ids; characters outside the vocabulary are skipped."""
        return torch.tensor([self.stoi[c] for c in text if c in self.stoi], dtype=torch.long)

    def decode(self, ids) -> str:
        return "".join(self.itos[int(i)] for i in ids)
