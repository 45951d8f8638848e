"""Chapter 8 reference code against PyTorch's and transformers' own implementations."""

import pytest
import torch
import torch.nn.functional as F

from transformer_course.llama import (
    GroupedQueryAttention,
    Llama,
    LlamaConfig,
    RMSNorm,
    SwiGLU,
    generate_greedy,
    kv_cache_bytes,
    repeat_kv,
)
from transformer_course.positional import apply_rotary

CONFIG = LlamaConfig(vocab_size=97, d_model=48, n_layers=2, n_heads=6, n_kv_heads=2, d_ff=80,
                     rope_base=500.0, eps=1e-5)


def _toy_model(seed: int = 0, llama_cls: type = Llama) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = llama_cls(CONFIG).eval()
    with torch.no_grad():  # non-trivial norm gains, so that a wrong RMSNorm would show
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.3 * torch.randn_like(p))
    return model


def test_rmsnorm_matches_torch():
    torch.manual_seed(0)
    norm = RMSNorm(10, eps=1e-4)
    with torch.no_grad():
        norm.weight.normal_()
    x = torch.randn(3, 4, 10)
    expected = F.rms_norm(x, (10,), norm.weight, eps=1e-4)
    torch.testing.assert_close(norm(x), expected)
    assert RMSNorm(4).eps == 1e-6  # the exercise's default


def test_swiglu_is_gated():
    torch.manual_seed(0)
    mlp = SwiGLU(8, 12)
    assert all(m.bias is None for m in (mlp.gate_proj, mlp.up_proj, mlp.down_proj))
    x = torch.randn(2, 3, 8)
    gate = x @ mlp.gate_proj.weight.T
    expected = (gate * torch.sigmoid(gate) * (x @ mlp.up_proj.weight.T)) @ mlp.down_proj.weight.T
    torch.testing.assert_close(mlp(x), expected)


def test_repeat_kv_matches_repeat_interleave():
    x = torch.randn(2, 3, 5, 4)
    torch.testing.assert_close(repeat_kv(x, 3), x.repeat_interleave(3, dim=1))
    assert repeat_kv(x, 1) is x


@pytest.mark.parametrize("n_kv_heads", [1, 2, 6])
def test_gqa_matches_torch_sdpa(n_kv_heads):
    torch.manual_seed(0)
    attn = GroupedQueryAttention(48, 6, n_kv_heads, rope_base=1000.0).eval()
    x = torch.randn(2, 7, 48)
    B, L = x.shape[:2]
    q = attn.q_proj(x).view(B, L, 6, 8).transpose(1, 2)
    k = attn.k_proj(x).view(B, L, n_kv_heads, 8).transpose(1, 2)
    v = attn.v_proj(x).view(B, L, n_kv_heads, 8).transpose(1, 2)
    q, k = apply_rotary(q, base=1000.0), apply_rotary(k, base=1000.0)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    expected = attn.o_proj(out.transpose(1, 2).reshape(B, L, 48))
    torch.testing.assert_close(attn(x), expected, rtol=1e-5, atol=1e-5)


def test_gqa_rejects_bad_head_counts():
    with pytest.raises(ValueError, match="n_kv_heads"):
        GroupedQueryAttention(48, 6, 4)


def test_cached_forward_equals_full_forward():
    model = _toy_model()
    idx = torch.randint(0, CONFIG.vocab_size, (2, 9))
    with torch.no_grad():
        full = model(idx)
        cache = model.new_cache()
        parts = [model(idx[:, :4], cache), model(idx[:, 4:5], cache), model(idx[:, 5:], cache)]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=1e-5, atol=1e-5)
    assert len(cache[0]) == 9


def test_kv_cache_bytes_matches_the_cache():
    model = _toy_model()
    cache = model.new_cache()
    with torch.no_grad():
        model(torch.randint(0, CONFIG.vocab_size, (1, 11)), cache)
    held = sum(c.k.numel() * c.k.element_size() + c.v.numel() * c.v.element_size() for c in cache)
    d_head = CONFIG.d_model // CONFIG.n_heads
    assert held == kv_cache_bytes(11, CONFIG.n_layers, CONFIG.n_kv_heads, d_head, bytes_per_value=4)


def test_generate_greedy_same_tokens_with_and_without_cache():
    model = _toy_model()
    prompt = torch.randint(0, CONFIG.vocab_size, (1, 5))
    cached = generate_greedy(model, prompt, 8, use_cache=True)
    plain = generate_greedy(model, prompt, 8, use_cache=False)
    assert cached.cached and not plain.cached
    assert torch.equal(cached.tokens, plain.tokens) and cached.tokens.shape == (1, 13)
    assert cached.tokens_per_s > 0
    with torch.no_grad():  # each new token is the argmax after the tokens before it
        logits = model(cached.tokens[:, :-1])
    assert torch.equal(logits[0, 4:].argmax(-1), cached.tokens[0, 5:])
    eos = int(cached.tokens[0, 7])
    first = int((cached.tokens[0, 5:] == eos).nonzero()[0])  # where it first appears
    stopped = generate_greedy(model, prompt, 8, eos_id=eos)
    assert torch.equal(stopped.tokens, cached.tokens[:, : 5 + first + 1])
    with pytest.raises(ValueError, match=r"\(1, L\)"):
        generate_greedy(model, prompt.repeat(2, 1), 3)


class _CacheIgnored(Llama):
    """new_cache() as given, but a forward that never passes the cache on."""

    def forward(self, idx, cache=None):
        return super().forward(idx)


def test_generate_greedy_reruns_the_sequence_for_a_model_without_a_cache():
    """A Llama with no new_cache(), or one whose forward leaves the caches empty, passes
    chapter 8's check: generation reruns the whole sequence for it, says so, and gives
    the tokens of the cached reference."""
    from alternatives import ch08_modern_llm as alt

    reference = _toy_model()
    prompt = torch.randint(0, CONFIG.vocab_size, (1, 5))
    want = generate_greedy(reference, prompt, 8).tokens
    for model in (alt.LlamaLinear(CONFIG), _CacheIgnored(CONFIG)):
        model.load_state_dict(reference.state_dict(), strict=False)
        got = generate_greedy(model.eval(), prompt, 8, use_cache=True)
        assert not got.cached, type(model)
        assert torch.equal(got.tokens, want), type(model)


def test_alternative_models_run_their_own_parts_and_equal_the_reference():
    """A Llama written another way (tests/alternatives) builds its blocks from the parts
    written beside it, and with the reference's weights gives the reference's logits."""
    from alternatives import ch08_modern_llm as alt

    reference = _toy_model()
    idx = torch.randint(0, CONFIG.vocab_size, (2, 9))
    for llama_cls, parts in [
        (alt.LlamaLinear, (alt.RMSNormNorm, alt.GroupedQueryAttentionTorch, alt.SwiGLUSigmoid)),
        (alt.LlamaOneHot, (alt.RMSNormSquare, alt.GroupedQueryAttentionEinsum, alt.SwiGLUFused)),
    ]:
        model = llama_cls(CONFIG).eval()
        model.load_state_dict(reference.state_dict(), strict=False)
        block = model.layers[0]
        assert (type(block.input_layernorm), type(block.self_attn), type(block.mlp)) == parts
        assert type(model.norm) is parts[0]
        with torch.no_grad():
            torch.testing.assert_close(model(idx), reference(idx), rtol=1e-4, atol=1e-5)


def test_tied_head():
    model = _toy_model()
    assert model.lm_head.weight is model.embed_tokens.weight
    untied = Llama(LlamaConfig(tie_embeddings=False))
    assert untied.lm_head.weight is not untied.embed_tokens.weight


def test_matches_transformers_llama():
    transformers = pytest.importorskip("transformers")
    hf_config = transformers.LlamaConfig(
        vocab_size=CONFIG.vocab_size, hidden_size=CONFIG.d_model, intermediate_size=CONFIG.d_ff,
        num_hidden_layers=CONFIG.n_layers, num_attention_heads=CONFIG.n_heads,
        num_key_value_heads=CONFIG.n_kv_heads, rms_norm_eps=CONFIG.eps,
        rope_theta=CONFIG.rope_base, tie_word_embeddings=True, attention_bias=False,
        mlp_bias=False,
    )
    hf = transformers.LlamaForCausalLM(hf_config).eval()
    model = _toy_model()
    state = {f"model.{k}": v for k, v in model.state_dict().items() if k != "lm_head.weight"}
    missing, unexpected = hf.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}
    idx = torch.randint(0, CONFIG.vocab_size, (2, 10))
    with torch.no_grad():
        torch.testing.assert_close(model(idx), hf(idx).logits, rtol=1e-4, atol=1e-4)

