"""The one KV cache that chapter 6's GPT and chapter 8's Llama share."""

import torch

from transformer_course import gpt, llama
from transformer_course.kv_cache import KVCache


def test_kv_cache_update_appends():
    cache = KVCache()
    assert len(cache) == 0
    k, v = torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4)
    cache.update(k, v)
    k_all, v_all = cache.update(k[:, :, :1], v[:, :, :1])
    assert k_all.shape == (1, 2, 4, 4) and len(cache) == 4
    assert torch.equal(k_all, torch.cat([k, k[:, :, :1]], dim=2))
    assert torch.equal(v_all, torch.cat([v, v[:, :, :1]], dim=2))
    assert cache.k is k_all and cache.v is v_all


def test_both_models_use_the_one_class():
    assert gpt.KVCache is KVCache and llama.KVCache is KVCache
    assert all(type(c) is KVCache for c in gpt.GPT(11, 8, 8, 2, 2).new_cache())
    assert all(type(c) is KVCache for c in llama.Llama(llama.LlamaConfig()).new_cache())
