"""The GPT: shapes, causality, weight tying, the KV cache, sampling and a short training."""

import pytest
import torch

from transformer_course import training
from transformer_course.gpt import GPT, GPTBlock, generate, next_token_loss, sample_next_token
from transformer_course.multi_head import fused_kernels
from transformer_course.training import train_language_model, warmup_cosine, window_loss


def small_gpt(**kwargs):
    torch.manual_seed(0)
    config = {"vocab_size": 20, "max_len": 32, "d_model": 32, "n_heads": 4, "n_layers": 2} | kwargs
    return GPT(**config).eval()


def test_shapes_and_tying():
    model = small_gpt()
    logits = model(torch.randint(20, (3, 10)))
    assert logits.shape == (3, 10, 20)
    assert model.lm_head.weight is model.tok_emb.weight
    assert model.blocks[0].mlp.linear1.out_features == 128  # d_ff defaults to 4 * d_model


def test_future_tokens_do_not_change_earlier_logits():
    model = small_gpt()
    idx = torch.randint(20, (2, 12))
    changed = idx.clone()
    changed[:, 8:] = (changed[:, 8:] + 1) % 20
    assert torch.allclose(model(idx)[:, :8], model(changed)[:, :8], atol=1e-6)
    assert not torch.allclose(model(idx)[:, 8:], model(changed)[:, 8:])


def test_block_is_pre_norm_residual():
    torch.manual_seed(0)
    block = GPTBlock(16, 2, 32).eval()
    with torch.no_grad():
        block.attn.w_o.weight.zero_()
        block.attn.w_o.bias.zero_()
        block.mlp.linear2.weight.zero_()
        block.mlp.linear2.bias.zero_()
    x = torch.randn(2, 5, 16) * 10
    assert torch.equal(block(x), x)  # both branches write zero: the residual passes x through


def test_cache_gives_the_same_logits():
    model = small_gpt()
    idx = torch.randint(20, (2, 15))
    cache = model.new_cache()
    pieces = [model(idx[:, :5], cache=cache)] + [model(idx[:, t : t + 1], cache=cache) for t in range(5, 15)]
    assert torch.allclose(torch.cat(pieces, dim=1), model(idx), atol=1e-5)
    assert len(cache[0]) == 15


def test_max_len_is_enforced():
    model = small_gpt(max_len=8)
    with pytest.raises(ValueError, match="max_len"):
        model(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="use_cache"):
        generate(model, torch.zeros(1, 4, dtype=torch.long), 6, use_cache=True)


@pytest.mark.parametrize("kwargs", [{"temperature": 0.0}, {"temperature": 1.0},
                                    {"temperature": 0.7, "top_k": 5}, {"temperature": 1.2, "top_p": 0.8}])
def test_generate_with_cache_gives_the_same_tokens(kwargs):
    model = small_gpt()
    prompt = torch.randint(20, (2, 3))
    runs = [generate(model, prompt, 25, generator=torch.Generator().manual_seed(7), use_cache=c, **kwargs)
            for c in (False, True)]
    assert runs[0].shape == (2, 28)
    assert torch.equal(runs[0][:, :3], prompt)
    assert torch.equal(runs[0], runs[1])


def test_generate_slides_the_window_without_cache():
    model = small_gpt(max_len=8)
    out = generate(model, torch.zeros(1, 2, dtype=torch.long), 20, temperature=0.0)
    assert out.shape == (1, 22)


def test_loss_shift():
    logits = torch.full((1, 4, 5), -100.0)
    tokens = torch.tensor([[0, 1, 2, 3]])
    for t in range(3):
        logits[0, t, tokens[0, t + 1]] = 100.0  # perfect prediction of the next token
    assert next_token_loss(logits, tokens).item() < 1e-6


def test_sampling_filters():
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0, -1.0]]).repeat(2000, 1)
    g = torch.Generator().manual_seed(0)
    assert sample_next_token(logits, temperature=0).eq(0).all()
    assert set(sample_next_token(logits, top_k=2, generator=g).tolist()) == {0, 1}
    # probabilities 0.64, 0.24, ...: top_p=0.7 keeps the token that crosses 0.7 (index 1).
    assert set(sample_next_token(logits, top_p=0.7, generator=g).tolist()) == {0, 1}
    assert set(sample_next_token(logits, top_p=0.5, generator=g).tolist()) == {0}
    assert len(set(sample_next_token(logits, temperature=5.0, generator=g).tolist())) == 5
    with pytest.raises(ValueError, match="temperature"):
        sample_next_token(logits, temperature=-1.0)


def test_training_lowers_the_loss():
    torch.manual_seed(0)
    data = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7] * 200)  # a cycle: perfectly predictable
    model = GPT(8, 16, 32, 2, 1)
    history = train_language_model(model, data, data, steps=60, batch_size=8, block_size=16,
                                   max_lr=1e-2, warmup_steps=5, eval_interval=30, eval_batches=2,
                                   progress=False)
    assert history["step"] == [0, 30, 60]
    assert history["val_loss"][-1] < 0.5 < history["val_loss"][0]


@pytest.mark.parametrize("fused", [False, True])
def test_training_runs_the_fused_kernels_only_when_asked(monkeypatch, capsys, fused):
    """fused=True trains through F.scaled_dot_product_attention with is_causal=True and
    says so; fused=False runs the code as written. After training, a forward pass records
    attention weights again."""
    calls = []
    original = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append(kwargs["is_causal"])
        return original(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    data = torch.arange(8).repeat(50)
    model = GPT(8, 16, 16, 2, 2)
    train_language_model(model, data, data, steps=3, batch_size=2, block_size=16, warmup_steps=1,
                         eval_interval=10, eval_batches=1, progress=False, fused=fused)
    printed = capsys.readouterr()
    assert (bool(calls) and all(calls)) == fused
    assert ("fused=True: 2 MultiHeadAttention ran PyTorch kernels" in printed.out + printed.err) == fused
    model(data[None, :16])
    assert model.blocks[0].attn.attn_weights.shape == (1, 2, 16, 16)


def test_fused_gpt_step_equals_the_explicit_one():
    """One training step's loss and gradients, float64: the fused path changes no number
    beyond rounding."""
    model = small_gpt().double().train()
    windows = torch.randint(20, (3, 17), generator=torch.Generator().manual_seed(0))

    def loss_and_grads():
        model.zero_grad()
        loss = window_loss(model, windows)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    explicit_loss, explicit_grads = loss_and_grads()
    with fused_kernels(model):
        loss_and_grads()  # the first call runs both ways
        fused_loss, fused_grads = loss_and_grads()
    torch.testing.assert_close(fused_loss, explicit_loss, rtol=0, atol=1e-10)
    for fused, explicit in zip(fused_grads, explicit_grads, strict=True):
        torch.testing.assert_close(fused, explicit, rtol=0, atol=1e-10)


def test_time_budget_ends_training_on_the_decayed_schedule(monkeypatch):
    """With max_seconds, the schedule follows the share of the budget spent: a budget
    too short for the steps stops early, and the last steps ran near min_lr."""
    clock = iter(range(10**6))  # every perf_counter() call: one more second
    monkeypatch.setattr(training.time, "perf_counter", lambda: float(next(clock)))
    lrs = []
    original_step = torch.optim.AdamW.step

    def record_step(self, *args, **kwargs):
        lrs.append(self.param_groups[0]["lr"])
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", record_step)
    data = torch.arange(8).repeat(50)
    history = train_language_model(GPT(8, 16, 16, 2, 1), data, data, steps=1000, batch_size=2,
                                   block_size=16, max_lr=1e-2, min_lr=1e-3, warmup_steps=2,
                                   eval_interval=10**6, eval_batches=1, progress=False,
                                   max_seconds=20)
    assert len(history["batch_loss"]) == 20  # one second a step, 20 seconds
    assert history["seconds"][-1] == 20
    assert lrs[0] == pytest.approx(5e-3)  # first warmup step (by steps: 1 / 2 of max_lr)
    # The last step started after 19 of 20 seconds: 95% through the cosine.
    assert lrs[-1] == pytest.approx(1e-2 * warmup_cosine(2, 1000, 0.1)(950))
    assert lrs[-1] < 1.1e-3
