"""Chapter 7's training loop: one step equals a hand-written PyTorch update, the loop
learns, a stopped run resumes exactly, and the loop's check (its stand-ins in place)
resumes as exactly and leaves the loop's namespace as it found it."""

import numpy as np
import torch
import torch.nn.functional as F

from transformer_course.batches import write_tokens
from transformer_course.gpt import GPT
from transformer_course.train import estimate_loss, train, train_step


def test_train_step_equals_a_pytorch_update():
    torch.manual_seed(0)
    ours = GPT(vocab_size=11, max_len=6, d_model=8, n_heads=2, n_layers=1).double()
    theirs = GPT(vocab_size=11, max_len=6, d_model=8, n_heads=2, n_layers=1).double()
    theirs.load_state_dict(ours.state_dict())
    opt_a = torch.optim.AdamW(ours.parameters(), lr=1.0)
    opt_b = torch.optim.AdamW(theirs.parameters(), lr=0.02)
    x, y = torch.randint(11, (3, 6)), torch.randint(11, (3, 6))
    for _ in range(3):
        loss = train_step(ours, opt_a, x, y, lr=0.02, max_grad_norm=0.5)
        want = F.cross_entropy(theirs(x).flatten(0, 1), y.flatten())
        opt_b.zero_grad()
        want.backward()
        torch.nn.utils.clip_grad_norm_(theirs.parameters(), 0.5)
        opt_b.step()
        assert abs(loss - want.item()) < 1e-12
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_loop_learns_a_repeating_sequence(tmp_path):
    ids = np.tile(np.arange(7), 60)
    tokens = write_tokens(tmp_path / "t.bin", ids)
    torch.manual_seed(0)
    model = GPT(vocab_size=7, max_len=8, d_model=16, n_heads=2, n_layers=1)
    before = estimate_loss(model, tokens, 4, 8, 2)
    history = train(model, tokens, tokens, steps=60, batch_size=4, context_length=8, max_lr=1e-2,
                    warmup_steps=5, eval_interval=20, eval_batches=2, progress=False, device="cpu")
    assert history["step"] == [0, 20, 40, 60] and len(history["batch_loss"]) == 60
    assert history["val_loss"][-1] < 0.5 * before


def test_stopped_and_resumed_run_equals_the_run_that_never_stopped(tmp_path):
    ids = np.tile(np.arange(9), 40)
    tokens = write_tokens(tmp_path / "t.bin", ids)
    options = dict(steps=8, batch_size=2, context_length=6, warmup_steps=2, eval_interval=3, eval_batches=1,
                   progress=False, device="cpu", checkpoint=tmp_path / "c.pt", checkpoint_interval=3)
    torch.manual_seed(0)
    straight = GPT(vocab_size=9, max_len=6, d_model=8, n_heads=2, n_layers=1)
    start = {k: v.clone() for k, v in straight.state_dict().items()}
    whole = train(straight, tokens, tokens, **options)
    first = GPT(vocab_size=9, max_len=6, d_model=8, n_heads=2, n_layers=1)
    first.load_state_dict(start)
    before = train(first, tokens, tokens, stop_after=5, **options)
    after = train(GPT(vocab_size=9, max_len=6, d_model=8, n_heads=2, n_layers=1), tokens, tokens, resume=True,
                  **options)
    assert (before["first_step"], after["first_step"]) == (0, 5)
    assert before["batch_loss"] + after["batch_loss"] == whole["batch_loss"]
    assert before["step"] + after["step"] == whole["step"] == [0, 3, 6, 8]
    assert before["val_loss"] + after["val_loss"] == whole["val_loss"]


def _check_run(case_args, **change):
    """The training check's harness on the reference loop (its stand-ins in place)."""
    from transformer_course.checks import ch07_training as checks

    with torch.no_grad():  # as a check runs it
        return checks._run_train(train, {**case_args, **change})


def test_the_checks_resumed_cases_equal_runs_that_never_stopped():
    from transformer_course.checks import ch07_training as checks

    for seed in range(3):
        cases = {c.name.split(" ")[0]: c.args for c in checks._train_cases(seed)}
        stopped, crashed = cases["10"], cases["11"]
        *history, first_steps, params = _check_run(stopped)
        *whole, whole_first, whole_params = _check_run(stopped, runs=[{}])
        assert first_steps.tolist() == [0, 5] and whole_first.tolist() == [0]
        for got, want in zip(history, whole, strict=True):
            assert torch.equal(got, want)
        assert torch.equal(params, whole_params)

        losses, steps, _, val, first_steps, params = _check_run(crashed)
        whole_losses, whole_steps, _, whole_val, _, whole_params = _check_run(crashed, runs=[{}],
                                                                              crash_at=None)
        assert first_steps.tolist() == [6]  # the call that crashed returns nothing
        assert torch.equal(losses, whole_losses[6:])
        kept = whole_steps >= 6
        assert torch.equal(steps, whole_steps[kept]) and torch.equal(val, whole_val[kept])
        assert torch.equal(params, whole_params)


def test_the_check_puts_the_loops_pieces_back():
    """The stand-ins replace the pieces only while the loop runs, even when it raises: a
    name the namespace held comes back, one it lacked goes again."""
    from transformer_course.checks import check

    namespace = {"sample_batch": "the student's own"}
    exec("def train(model, *args, **kwargs):\n    sample_batch(None, 1, 1)\n    raise ValueError('no')\n",
         namespace)
    assert not check(namespace["train"], name="train").passed
    assert namespace["sample_batch"] == "the student's own" and "train_step" not in namespace
    import transformer_course.train as module

    assert module.train_step is train_step and check(train).passed and module.train_step is train_step
