"""Chapter 4's post-norm against pre-norm experiment, on tiny sizes."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from transformer_course.encoder import EncoderLayer
from transformer_course.experiments.norms import (
    NormRun,
    chance_loss,
    count_batch,
    highest_learning_rate,
    norm_step_times,
    norm_sweep,
    train_norm_run,
)
from transformer_course.training import other_setting_seconds


def test_count_batch_counts_each_token_in_its_row():
    ids, counts = count_batch(5, 9, 3, torch.Generator().manual_seed(0))
    for row, row_counts in zip(ids.tolist(), counts.tolist(), strict=True):
        assert row_counts == [row.count(t) for t in row]


def test_chance_loss_is_the_entropy_of_one_plus_a_binomial():
    # A token's count is itself plus how many of the other L - 1 tokens equal it.
    seq_len, vocab = 12, 8
    p = 1 / vocab
    probs = [math.comb(seq_len - 1, k) * p**k * (1 - p) ** (seq_len - 1 - k) for k in range(seq_len)]
    entropy = -sum(q * math.log(q) for q in probs if q > 0)
    assert abs(chance_loss(seq_len, vocab) - entropy) < 0.01


def test_runs_differ_only_in_what_they_are_told():
    tiny = {"steps": 3, "n_layers": 1, "seq_len": 6, "vocab_size": 4, "batch": 8}
    a, b = train_norm_run(True, 1e-3, **tiny), train_norm_run(True, 1e-3, **tiny)
    assert a.losses == b.losses and len(a.losses) == 3
    assert train_norm_run(False, 1e-3, **tiny).losses[0] != a.losses[0]  # another model


def test_warmup_starts_small():
    tiny = {"steps": 2, "n_layers": 1, "seq_len": 6, "vocab_size": 4, "batch": 8}
    plain = train_norm_run(False, 1.0, **tiny)
    warm = train_norm_run(False, 1.0, warmup_steps=1000, **tiny)
    assert plain.losses[0] == warm.losses[0]  # the same model and batch before any step
    assert abs(warm.losses[1] - warm.losses[0]) < abs(plain.losses[1] - plain.losses[0])


def test_sweep_builds_from_the_classes_it_is_given():
    built = []

    class Layer(EncoderLayer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append(self.norm_first)

    runs = norm_sweep([1e-3, 1e-2], 2, warmup_steps=1, n_layers=2, seq_len=6, vocab_size=4,
                      batch=8, layer=Layer, norm=nn.LayerNorm)
    assert [(r.name, r.lr) for r in runs] == [
        ("post-norm", 1e-3), ("pre-norm", 1e-3), ("post-norm + warmup", 1e-3),
        ("post-norm", 1e-2), ("pre-norm", 1e-2), ("post-norm + warmup", 1e-2)]
    assert built == [False, False, True, True, False, False] * 2


def test_highest_learning_rate_reads_the_final_losses():
    runs = [NormRun(False, 1e-3, 0, [1.0] * 10), NormRun(False, 1e-2, 0, [0.1] * 10),
            NormRun(False, 3e-2, 0, [1.4] * 10), NormRun(True, 3e-2, 0, [0.1] * 10)]
    assert highest_learning_rate(runs, "post-norm", chance=1.4) == 1e-2
    assert highest_learning_rate(runs, "pre-norm", chance=1.4) == 3e-2
    assert highest_learning_rate(runs, "post-norm + warmup", chance=1.4) is None


@pytest.mark.parametrize("fused", [False, True])
def test_runs_use_the_fused_kernels_only_when_asked(monkeypatch, capsys, fused):
    """A run trains on the modules' code as written unless told fused=True, which runs the
    attention call through F.scaled_dot_product_attention, says so, and changes no loss
    beyond rounding."""
    calls = []
    original = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append(args[0].shape)
        return original(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    tiny = {"steps": 3, "n_layers": 2, "seq_len": 6, "vocab_size": 4, "batch": 8}
    run = train_norm_run(True, 1e-3, fused=fused, **tiny)
    printed = capsys.readouterr()
    assert bool(calls) == fused
    assert ("fused=True: 5 LayerNorm, 2 MultiHeadAttention ran PyTorch kernels"
            in printed.out + printed.err) == fused
    as_written = train_norm_run(True, 1e-3, **tiny)
    torch.testing.assert_close(run.losses, as_written.losses, rtol=1e-4, atol=1e-5)


def test_step_times_measure_both_settings(monkeypatch):
    """norm_step_times times the same model as written and fused (the kernel is called
    only in the fused setting's steps)."""
    calls = []
    original = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                        lambda *a, **k: calls.append(1) or original(*a, **k))
    times = norm_step_times(n_layers=1, seq_len=6, vocab_size=4, batch=8, repeats=2)
    assert set(times) == {"as written", "fused"} and all(ms > 0 for ms in times.values())
    assert len(calls) >= 3  # the fused warm-up step (and its check) and two timed steps


def test_other_setting_scales_a_run_by_the_measured_step_times():
    """A run as written that took 30 s, with steps 3x slower than fused: about 10 s fused;
    a fused run of 10 s: about 30 s as written."""
    step_ms = {"as written": 60.0, "fused": 20.0}
    assert other_setting_seconds(step_ms, fused=False, seconds=30.0) == 10.0
    assert other_setting_seconds(step_ms, fused=True, seconds=10.0) == 30.0
