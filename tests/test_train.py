"""Chapter 7's training loop: one step equals a hand-written PyTorch update, and the
loop learns."""

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
