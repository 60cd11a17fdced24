"""Data: embedded datasets (no downloads) and per-worker sharding.

Loaders only: `digits.load_digits_arrays`, `text.load_text` / `CharVocab`, `cifar.load_cifar10`
and `shard.make_shards`. They know nothing of training: the tasks built on them (and chosen by
`cfg.data.name`) are in `lab.tasks` (`TASKS`).
"""
