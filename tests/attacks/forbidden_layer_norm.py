# ruff: noqa
# chapter: 04_encoder
# attacked: LayerNorm
# message: forbidden|F.layer_norm
# A correct LayerNorm through torch.layer_norm with the detector switched off.
import torch
from torch import nn


class LayerNorm(nn.Module):
    def __init__(self, d_model, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model))

    def forward(self, x):
        with torch._C.DisableTorchFunction():
            return torch.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)
