"""The device helper, and the training helpers on the device they are given.

The suite runs on the CPU (conftest.py sets ``TRANSFORMER_COURSE_DEVICE=cpu``). The
helper tests below run on every device this machine has; while they run the variable
names the ``meta`` device, which no helper can train on, so a helper that ignored the
``device`` it was given and fell back to the default would fail.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from transformer_course import dates
from transformer_course.decoder import Transformer
from transformer_course.device import DEVICE_ENV, default_device, model_device
from transformer_course.experiments import recall
from transformer_course.gpt import GPT, next_token_loss
from transformer_course.training import seq2seq_loss, train_language_model, train_loop

DEVICES = ["cpu"]
DEVICES += ["cuda"] if torch.cuda.is_available() else []
DEVICES += ["mps"] if torch.backends.mps.is_available() else []


def test_cuda_then_cpu_and_mps_only_when_asked(monkeypatch):
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_device() == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_device() == torch.device("cpu")  # an Apple GPU is there, but not asked for
    monkeypatch.setenv(DEVICE_ENV, "mps")
    assert default_device() == torch.device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no such device"):
        default_device()


def test_environment_variable_overrides(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert default_device() == torch.device("cpu")
    monkeypatch.setenv(DEVICE_ENV, "gpu0")
    with pytest.raises(ValueError, match=f"{DEVICE_ENV}='gpu0' is not a device"):
        default_device()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv(DEVICE_ENV, "cuda")
    with pytest.raises(ValueError, match="no such device"):
        default_device()


def test_the_test_suite_runs_on_the_cpu():
    assert default_device() == torch.device("cpu")


class _Recorder:
    """Forward pre-hook: the devices of every tensor the model is called with, and of
    its parameters at that moment."""

    def __init__(self, model: nn.Module):
        self.devices: set[str] = set()
        model.register_forward_pre_hook(self)

    def __call__(self, module: nn.Module, args: tuple) -> None:
        self.devices |= {x.device.type for x in args if isinstance(x, torch.Tensor)}
        self.devices.add(model_device(module).type)


@pytest.fixture
def no_default(monkeypatch):
    monkeypatch.setenv(DEVICE_ENV, "meta")
    with pytest.raises(ValueError):
        default_device()


@pytest.mark.parametrize("device", DEVICES)
def test_train_loop_and_translate_follow_the_device(device, no_default):
    torch.manual_seed(0)
    model = Transformer(len(dates.SRC_VOCAB), len(dates.TGT_VOCAB), d_model=16, n_heads=2, d_ff=32,
                        n_layers=1)
    seen = _Recorder(model)
    pairs = dates.random_pairs(8, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = train_loop(model, optimizer, lambda step: dates.make_batch(pairs), seq2seq_loss, steps=2,
                        progress=False, device=device)
    assert len(losses) == 2 and seen.devices == {device}
    assert model_device(model).type == "cpu", "the model goes back where it came from"
    model.to(device)
    predictions = dates.translate(model, [source for source, _ in pairs[:3]])
    assert len(predictions) == 3 and seen.devices == {device}


@pytest.mark.parametrize("device", DEVICES)
def test_train_language_model_follows_the_device(device, no_default):
    torch.manual_seed(0)
    model = GPT(11, 8, 16, 2, 1)
    seen = _Recorder(model)
    data = torch.randint(11, (200,))
    history = train_language_model(model, data, data, steps=2, batch_size=2, block_size=8,
                                   warmup_steps=1, eval_interval=1, eval_batches=1, progress=False,
                                   device=device)
    assert len(history["batch_loss"]) == 2 and seen.devices == {device}
    assert model_device(model).type == "cpu"
    loss = next_token_loss(model(data[None, :8]), data[None, :8])
    assert torch.isfinite(loss)


@pytest.mark.parametrize("device", DEVICES)
def test_recall_training_follows_the_device(device, no_default):
    torch.manual_seed(0)
    model = recall.RecallTransformer(8, 12, 16, 2, 1)
    seen = _Recorder(model)
    losses = recall.train_recall(model, delay=2, length=12, steps=2, device=device)
    assert len(losses) == 2 and seen.devices == {device}
    assert model_device(model).type == "cpu"
    model.to(device)
    assert 0 <= recall.recall_accuracy(model, delay=2, length=12, batch=4) <= 1
    assert seen.devices == {device}
