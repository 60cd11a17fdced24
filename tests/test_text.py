"""Chapter 03's data and model: the text task, the character RNNs, and a short real training run."""
import time

import pytest
import torch

from lab.config import DataConfig, ModelConfig, RunConfig
from lab.tasks import TASKS
from lab.data.text import CharVocab, default_text, load_text
from lab.errors import ConfigError
from lab.models import MODELS
from lab.tasks.language import LanguageTask, unigram_perplexity


@pytest.fixture(scope="module")
def task():
    return TASKS.build("text", DataConfig(name="text", seq_len=64, test_fraction=0.1), torch.float32)


def test_vocab_covers_the_text_and_round_trips(task):
    text = default_text()
    assert len(text) > 100_000 and task.unit == "tokens" and task.kind == "language"
    itos = task.spec["itos"]
    assert itos == sorted(set(text)) and task.spec["vocab_size"] == len(itos)
    assert all(task.vocab.stoi[c] == i for i, c in enumerate(itos))
    assert task.vocab.decode(task.vocab.encode(text[:5000])) == text[:5000]
    assert CharVocab("ab").encode("a?b").tolist() == [0, 1]  # unknown characters are skipped


def test_held_out_text_is_the_tail(task):
    ids = task.vocab.encode(default_text())
    assert torch.equal(torch.cat([task.train_ids, task.test_ids]), ids)
    assert len(task.test_ids) == pytest.approx(0.1 * len(ids), abs=2)


def test_shards_are_disjoint_contiguous_and_cover_the_training_text(task):
    shards = [task.shard(r, 3) for r in range(3)]
    assert torch.equal(torch.cat(shards), task.train_ids)  # in order, no overlap, nothing left out
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_batches_are_next_character_pairs_from_the_worker_shard(task):
    world = 4
    x, y = next(task.batches(1, world, 8))
    assert x.shape == y.shape == (8, 64) and x.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])  # targets are the inputs shifted by one
    windows = task.shard(1, world).unfold(0, 65, 1)  # every 65-character window of the shard
    for row in torch.cat([x, y[:, -1:]], 1):
        assert (windows == row).all(1).any()  # each sequence is real text from this worker's shard


def test_batches_are_reproducible_by_seed_and_differ_between_ranks(task):
    a, b = task.batches(0, 2, 4), task.batches(0, 2, 4)
    for _ in range(3):
        assert torch.equal(next(a)[0], next(b)[0])
    assert not torch.equal(next(task.batches(0, 2, 4))[0], next(task.batches(1, 2, 4))[0])
    other = LanguageTask(default_text(), seq_len=64, test_fraction=0.1, seed=1)
    assert not torch.equal(next(task.batches(0, 2, 4))[0], next(other.batches(0, 2, 4))[0])


def test_batch_size_may_change_mid_run(task):
    size = [4]
    it = task.batches(0, 1, lambda: size[0])
    assert len(next(it)[0]) == 4
    size[0] = 9
    assert len(next(it)[0]) == 9


def test_loss_counts_tokens(task):
    model = MODELS.build("lstm", task.spec, ModelConfig(name="lstm"))
    loss, n, _ = task.loss(model, next(task.batches(0, 1, 5)))
    assert n == 5 * 64 and loss.ndim == 0
    # an untrained model is close to a uniform guess over the vocabulary
    assert abs(loss.item() - torch.log(torch.tensor(float(task.spec["vocab_size"])))) < 0.5


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_generate_returns_exactly_length_characters_from_the_vocab(task, name):
    model = MODELS.build(name, task.spec, ModelConfig(name=name))
    vocab = set(task.spec["itos"])
    for prompt in ("def ", "", "€☃ unknown ✓"):
        out = model.generate(prompt, length=50, temperature=0.8)
        assert isinstance(out, str) and len(out) == 50 and set(out) <= vocab
    assert model.generate("The ", 0) == ""
    assert model.generate("The ", 30, temperature=0) == model.generate("The ", 30, temperature=0)
    assert model.generate("a", 30, seed=3) == model.generate("a", 30, seed=3)
    with pytest.raises(ConfigError, match="length"):
        model.generate("a", -1)


def test_unigram_perplexity_of_uniform_counts_is_the_vocab_size():
    train = torch.arange(10).repeat(50)
    assert unigram_perplexity(train, torch.arange(10), 10) == pytest.approx(10.0)


def test_a_text_file_can_be_used(tmp_path):
    f = tmp_path / "poem.txt"
    f.write_text("the quick brown fox jumps over the lazy dog. " * 40, encoding="utf-8")
    task = TASKS.build("text", DataConfig(name="text", path=str(f), seq_len=16), torch.float32)
    assert task.spec["vocab_size"] == len(set(f.read_text()))
    x, y = next(task.batches(0, 2, 4))
    assert x.shape == (4, 16)


@pytest.mark.parametrize("content, says", [
    (None, "an existing text file"), ("dir", "not a directory"),
    (b"", "non-empty"), (b"  \n\n", "non-empty"),
    (bytes(range(256)) * 4, "not binary"), (b"ab\x00\x00cd", "not binary")])
def test_bad_text_files_give_one_line_errors_naming_the_path(tmp_path, content, says):
    f = tmp_path / "corpus.txt"
    if content == "dir":
        f.mkdir()
    elif content is not None:
        f.write_bytes(content)
    with pytest.raises(ConfigError) as e:
        load_text(str(f))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("path must be") and str(f) in msg and says in msg


def test_seq_len_longer_than_the_text_is_a_config_error(tmp_path):
    f = tmp_path / "short.txt"
    f.write_text("tiny text " * 10)
    with pytest.raises(ConfigError, match="seq_len"):
        TASKS.build("text", DataConfig(name="text", path=str(f), seq_len=64), torch.float32)


def test_text_needs_a_language_model():
    RunConfig(data=DataConfig(name="text"), model=ModelConfig(name="lstm")).validate()
    with pytest.raises(ConfigError, match="model"):
        RunConfig(data=DataConfig(name="text"), model=ModelConfig(name="cnn")).validate()


def test_char_lstm_beats_the_unigram_baseline_by_40_percent(task, capsys):
    """A short real training run on Python's help text: held-out perplexity well below unigram."""
    torch.manual_seed(0)
    model = MODELS.build("lstm", task.spec, ModelConfig(name="lstm"))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    batches = task.batches(0, 1, 32)
    start = time.perf_counter()
    before = task.evaluate(model)["perplexity"]
    for _ in range(120):
        loss, _, _ = task.loss(model, next(batches))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = task.evaluate(model)
    seconds = time.perf_counter() - start
    baseline = task.unigram_perplexity()
    with capsys.disabled():
        print(f"\n[char-LSTM] untrained {before:.1f}, unigram {baseline:.2f}, after 120 steps "
              f"{after['perplexity']:.2f} ({1 - after['perplexity'] / baseline:.0%} below unigram) in {seconds:.1f} s")
    assert before > baseline  # untrained is worse than counting characters ...
    assert after["perplexity"] <= 0.6 * baseline  # ... and a few seconds of training beats it by 40%+
    sample = model.generate("def ", 40, temperature=0.8, seed=0)
    assert len(sample) == 40
