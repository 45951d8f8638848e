"""A run that stops and resumes from a checkpoint computes exactly the losses of a run
that never stopped; a checkpoint missing a part would not."""

import numpy as np
import torch

from transformer_course.batches import write_tokens
from transformer_course.checkpoint import load_checkpoint, save_checkpoint
from transformer_course.gpt import GPT
from transformer_course.train import make_optimizer, train

CONFIG = dict(vocab_size=17, max_len=8, d_model=16, n_heads=2, n_layers=1)
RUN = dict(steps=10, batch_size=3, context_length=8, warmup_steps=2, eval_interval=4, eval_batches=1,
           progress=False, device="cpu")


def _tokens(tmp_path):
    ids = np.random.default_rng(0).integers(0, 17, 400)
    return write_tokens(tmp_path / "train.bin", ids), write_tokens(tmp_path / "val.bin", ids[:100])


def test_resumed_run_gives_exactly_the_losses_of_the_uninterrupted_one(tmp_path):
    train_ids, val_ids = _tokens(tmp_path)
    torch.manual_seed(0)
    straight = GPT(**CONFIG)
    start = {k: v.clone() for k, v in straight.state_dict().items()}
    full = train(straight, train_ids, val_ids, **RUN)

    first = GPT(**CONFIG)
    first.load_state_dict(start)
    path = tmp_path / "ckpt.pt"
    part = train(first, train_ids, val_ids, checkpoint=path, stop_after=4, **RUN)
    torch.manual_seed(99)
    rest = train(GPT(**CONFIG), train_ids, val_ids, checkpoint=path, resume=True, **RUN)
    assert rest["first_step"] == 4
    assert part["batch_loss"] + rest["batch_loss"] == full["batch_loss"]
    assert rest["val_loss"][-1] == full["val_loss"][-1]


def test_checkpoint_round_trip_restores_all_four_parts(tmp_path):
    torch.manual_seed(0)
    model = GPT(**CONFIG)
    optimizer = make_optimizer(model, 1e-2, 0.1)
    model(torch.zeros(1, 4, dtype=torch.long)).sum().backward()
    optimizer.step()
    generator = torch.Generator().manual_seed(5)
    torch.rand(3, generator=generator)
    save_checkpoint(tmp_path / "c.pt", model, optimizer, 7, generator)
    assert set(torch.load(tmp_path / "c.pt")) == {"model", "optimizer", "step", "rng"}

    other = GPT(**CONFIG)
    other_opt = make_optimizer(other, 1e-2, 0.1)
    other_gen = torch.Generator().manual_seed(0)
    assert load_checkpoint(tmp_path / "c.pt", other, other_opt, other_gen) == 7
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values(),
                                                    strict=True))
    assert torch.equal(torch.rand(4, generator=generator), torch.rand(4, generator=other_gen))
    p, q = next(iter(model.parameters())), next(iter(other.parameters()))
    assert torch.equal(optimizer.state[p]["exp_avg_sq"], other_opt.state[q]["exp_avg_sq"])
