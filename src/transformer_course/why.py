"""Chapter 08: why Transformers matter, measured.

The graded exercises are small tools the experiments use: an Elman RNN written with an
explicit loop over time (the sequential baseline), a power-law fit (for the scaling
curve) and a matrix of cosine similarities (for contextual representations). The rest
of the module holds the experiments themselves: timing a forward pass, the long-range
recall task with the recurrent and Transformer models trained on it, and the scaling
run on the chapter 06 corpus.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from transformer_course.attention import causal_mask
from transformer_course.device import model_device, resolve, to_device
from transformer_course.encoder import EncoderLayer, LayerNorm
from transformer_course.multi_head import MultiHeadAttention, fused_kernels
from transformer_course.positional import LearnedPositionalEmbedding

# =========================================================================== exercises


def rnn_forward(
    x: Tensor,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor,
    bias_hh: Tensor,
    h0: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """An Elman RNN (tanh), one time step after another, batch-first.

    ``h_t = tanh(x_t @ weight_ih^T + bias_ih + h_{t-1} @ weight_hh^T + bias_hh)``, the
    same computation and parameter names as one layer of ``torch.nn.RNN``.

    Args:
        x: ``(B, L, D_in)`` inputs.
        weight_ih: ``(H, D_in)`` input-to-hidden weight.
        weight_hh: ``(H, H)`` hidden-to-hidden weight.
        bias_ih, bias_hh: ``(H,)`` biases (both are added, as in ``nn.RNN``).
        h0: ``(B, H)`` initial hidden state; zeros when None.

    Returns:
        ``output (B, L, H)``, the hidden state after every step, and ``h_n (B, H)``, the
        state after the last step.
    """
    ### BEGIN SOLUTION
    batch, length, _ = x.shape
    h = x.new_zeros(batch, weight_hh.size(0)) if h0 is None else h0
    # The input projection does not depend on h, so all time steps take it at once;
    # only the recurrence has to wait for the previous step.
    inputs = x @ weight_ih.T + bias_ih
    states = []
    for t in range(length):
        h = torch.tanh(inputs[:, t] + h @ weight_hh.T + bias_hh)
        states.append(h)
    return torch.stack(states, dim=1), h
    ### END SOLUTION


def fit_power_law(n_params: Tensor, losses: Tensor) -> tuple[Tensor, Tensor]:
    """Fit ``loss ~ coefficient * n_params ** exponent`` by least squares in log space.

    Taking logarithms turns the power law into a line,
    ``log(loss) = log(coefficient) + exponent * log(n_params)``, so the fit is ordinary
    least squares of ``log(losses)`` on ``log(n_params)`` (natural logarithms).

    Args:
        n_params: ``(N,)`` positive model sizes, floating point, N >= 2.
        losses: ``(N,)`` positive losses, same dtype.

    Returns:
        ``coefficient`` and ``exponent``, 0-d tensors of the inputs' dtype. For losses
        that fall with size the exponent is negative.
    """
    if n_params.dim() != 1 or n_params.shape != losses.shape or n_params.numel() < 2:
        raise ValueError(
            "fit_power_law takes two 1-D tensors of the same length (at least 2 points); "
            f"got shapes {tuple(n_params.shape)} and {tuple(losses.shape)}"
        )
    if (n_params <= 0).any() or (losses <= 0).any():
        raise ValueError("fit_power_law needs positive sizes and losses (it takes their logarithms)")
    ### BEGIN SOLUTION
    log_n, log_loss = n_params.log(), losses.log()
    dx, dy = log_n - log_n.mean(), log_loss - log_loss.mean()
    exponent = (dx * dy).sum() / (dx * dx).sum()
    intercept = log_loss.mean() - exponent * log_n.mean()
    return intercept.exp(), exponent
    ### END SOLUTION


def cosine_similarity_matrix(a: Tensor, b: Tensor) -> Tensor:
    """Cosine similarity of every row of ``a`` with every row of ``b``.

    Each norm is clamped to at least ``1e-8`` before dividing (as
    ``F.cosine_similarity`` does), so a row of zeros has similarity 0 with everything
    instead of NaN.

    Args:
        a: ``(N, D)``.
        b: ``(M, D)``.

    Returns:
        ``(N, M)``, entry ``[i, j] = a_i . b_j / (|a_i| |b_j|)``, in ``[-1, 1]``.
    """
    ### BEGIN SOLUTION
    a = a / a.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    b = b / b.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    return a @ b.T
    ### END SOLUTION


# =========================================================================== parallel processing


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch threads (unchanged when None), then restore.

    The experiments of this chapter default to one thread. Their models are small, so
    their matrix products gain little from several threads, and on a busy machine
    threads that wait for each other made training steps and timed calls many times
    slower (up to a hundredfold, measured on a shared 2-core machine).
    """
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def time_call(fn: Callable[[], object], repeats: int = 5, min_time: float = 0.2) -> float:
    """Wall-clock seconds of ``fn()``: the fastest of at least ``repeats`` runs (more for
    a fast call, until ``min_time`` seconds have passed), after a warm-up run. The
    fastest run is the one least disturbed by other programs on the machine."""
    fn()
    best, spent, runs = math.inf, 0.0, 0
    while runs < repeats or spent < min_time:
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
        best, spent, runs = min(best, elapsed), spent + elapsed, runs + 1
    return best


def time_sequence_models(
    lengths: list[int],
    d_model: int = 64,
    batch: int = 8,
    n_heads: int = 4,
    repeats: int = 5,
    rnn: Callable[..., tuple[Tensor, Tensor]] = rnn_forward,
    seed: int = 0,
    num_threads: int | None = 1,
) -> dict[str, list[float]]:
    """Seconds per forward pass (:func:`time_call`) of four sequence layers of width
    ``d_model`` on inputs ``(batch, L, d_model)``, for each length in ``lengths``.

    - ``"RNN (Python loop)"``: ``rnn`` (your ``rnn_forward``), one Python step per token;
    - ``"nn.LSTM (C++ loop)"``: PyTorch's LSTM, one compiled step per token;
    - ``"self-attention (course)"``: the chapter 02 ``MultiHeadAttention`` with a causal
      mask, which builds the full ``(L, L)`` weight matrix of every head;
    - ``"self-attention (fused)"``: the same module with ``need_weights = False``
      (:func:`~transformer_course.multi_head.fused_kernels`): the same weights and
      result through ``F.scaled_dot_product_attention(is_causal=True)``, PyTorch's fused
      kernel, which never stores that matrix.

    The timing runs on ``num_threads`` threads (:func:`torch_threads`; None keeps torch's
    setting). One thread by default: on a busy machine, threads that wait for each other
    made single calls hundreds of times slower and the timings meaningless (measured
    while writing this chapter on a shared 2-core machine).

    Returns:
        ``{model name: [seconds for each length]}``.
    """
    torch.manual_seed(seed)
    cell = nn.RNN(d_model, d_model, batch_first=True)  # only a holder for the weights
    lstm = nn.LSTM(d_model, d_model, batch_first=True)
    attention = MultiHeadAttention(d_model, n_heads).eval()
    weights = (cell.weight_ih_l0, cell.weight_hh_l0, cell.bias_ih_l0, cell.bias_hh_l0)

    times: dict[str, list[float]] = {"RNN (Python loop)": [], "nn.LSTM (C++ loop)": [],
                                     "self-attention (course)": [], "self-attention (fused)": []}
    with torch.no_grad(), torch_threads(num_threads):
        for length in tqdm(lengths, desc="timing"):
            x = torch.randn(batch, length, d_model)
            mask = causal_mask(length)
            times["RNN (Python loop)"].append(time_call(partial(rnn, x, *weights), repeats))
            times["nn.LSTM (C++ loop)"].append(time_call(partial(lstm, x), repeats))
            times["self-attention (course)"].append(time_call(partial(attention, x, x, x, mask), repeats))
            with fused_kernels(attention):
                times["self-attention (fused)"].append(time_call(partial(attention, x, x, x, mask), repeats))
    return times


# =========================================================================== long-range recall


def delay_recall_batch(
    batch: int, length: int, delay: int, vocab_size: int = 8, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """The "recall the token seen ``delay`` positions earlier" task.

    The input is a sequence of random tokens; the target at position ``t`` is the input
    token at ``t - delay``. Positions ``t < delay`` have nothing to recall and are
    marked -100 (ignored by ``F.cross_entropy``). To succeed, a model must keep the last
    ``delay`` tokens available at every step.

    Returns:
        ``x (batch, length)`` and ``y (batch, length)``, both LongTensors.
    """
    if not 0 < delay < length:
        raise ValueError(f"delay must be between 1 and length - 1 = {length - 1}, got {delay}")
    x = torch.randint(vocab_size, (batch, length), generator=generator)
    y = torch.full_like(x, -100)
    y[:, delay:] = x[:, :-delay]
    return x, y


class RecurrentTagger(nn.Module):
    """Embedding, one recurrent layer (``"rnn"``: tanh Elman RNN, or ``"lstm"``) and a
    linear read-out at every position: ``(B, L)`` token ids -> ``(B, L, vocab)`` logits."""

    def __init__(self, vocab_size: int, hidden: int, kind: str = "rnn"):
        super().__init__()
        layers = {"rnn": nn.RNN, "lstm": nn.LSTM}
        if kind not in layers:
            raise ValueError(f"kind must be 'rnn' or 'lstm', got {kind!r}")
        self.kind = kind
        self.embed = nn.Embedding(vocab_size, hidden)
        self.rnn = layers[kind](hidden, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab_size)

    def forward(self, idx: Tensor) -> Tensor:
        states, _ = self.rnn(self.embed(idx))
        return self.head(states)


class RecallTransformer(nn.Module):
    """A small causal Transformer built from the course's own layers: token embedding,
    learned positions (chapter 03), pre-norm encoder layers with a causal mask
    (chapters 01, 02, 04), a final LayerNorm and a linear read-out.
    ``(B, L)`` token ids -> ``(B, L, vocab)`` logits."""

    def __init__(self, vocab_size: int, max_len: int, d_model: int = 32, n_heads: int = 4,
                 n_layers: int = 2, d_ff: int | None = None):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos = LearnedPositionalEmbedding(max_len, d_model)
        self.layers = nn.ModuleList(
            EncoderLayer(d_model, n_heads, d_ff or 2 * d_model, norm_first=True) for _ in range(n_layers)
        )
        self.norm = LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, idx: Tensor) -> Tensor:
        x = self.pos(self.embed(idx))
        mask = causal_mask(idx.size(1)).to(idx.device)
        for layer in self.layers:
            x = layer(x, mask)
        return self.head(self.norm(x))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def recurrent_hidden_for(n_params: int, kind: str, vocab_size: int = 8) -> int:
    """The hidden size that gives a :class:`RecurrentTagger` about ``n_params`` parameters."""
    def size(hidden: int) -> int:
        return count_parameters(RecurrentTagger(vocab_size, hidden, kind))

    hidden = 1
    while size(hidden + 1) <= n_params:
        hidden += 1
    return hidden if abs(size(hidden) - n_params) <= abs(size(hidden + 1) - n_params) else hidden + 1


def train_recall(
    model: nn.Module,
    delay: int,
    length: int,
    steps: int,
    batch: int = 32,
    vocab_size: int = 8,
    lr: float = 3e-3,
    seed: int = 0,
    progress: bool = False,
    device: torch.device | str | None = None,
) -> list[float]:
    """Train ``model`` on :func:`delay_recall_batch` with Adam; returns the loss per step.
    Trains on ``device`` (None: :func:`transformer_course.device.default_device`), then
    moves the model back to its own device. Attention and LayerNorm run fused kernels
    (:func:`~transformer_course.multi_head.fused_kernels`)."""
    generator = torch.Generator().manual_seed(seed)
    home, device = model_device(model), resolve(device)
    params = list(model.to(device).parameters())
    optimizer = torch.optim.Adam(params, lr=lr, fused=True)
    model.train()
    losses = []
    with fused_kernels(model):
        for _ in tqdm(range(steps), desc=f"delay {delay}", disable=not progress, leave=False):
            x, y = to_device(delay_recall_batch(batch, length, delay, vocab_size, generator), device)
            logits = model(x)
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            losses.append(loss.item())
    model.to(home)
    return losses


@torch.no_grad()
def recall_accuracy(model: nn.Module, delay: int, length: int, batch: int = 256,
                    vocab_size: int = 8, seed: int = 1234) -> float:
    """Fraction of positions ``t >= delay`` whose recalled token is right, on fresh data."""
    generator = torch.Generator().manual_seed(seed)
    x, y = to_device(delay_recall_batch(batch, length, delay, vocab_size, generator), model_device(model))
    model.eval()
    with fused_kernels(model):
        predictions = model(x).argmax(-1)
    scored = y != -100
    return (predictions[scored] == y[scored]).float().mean().item()


@dataclass
class RecallResult:
    """Accuracy of each model at each delay, and the models' sizes."""

    delays: list[int]
    accuracy: dict[str, list[float]]
    n_params: dict[str, int]
    chance: float
    models: dict[str, nn.Module]  # the trained models of the last (longest) delay


def recall_experiment(
    delays: list[int],
    steps: int,
    d_model: int = 32,
    n_heads: int = 4,
    n_layers: int = 1,
    vocab_size: int = 8,
    scored: int = 16,
    batch: int = 32,
    lr: float = 3e-3,
    seed: int = 0,
    num_threads: int | None = 1,
) -> RecallResult:
    """Train a tanh RNN, an LSTM and a Transformer of about the same parameter count on
    the delay-recall task for each delay, with the same data, steps and optimiser.

    Each sequence is ``delay + scored`` tokens long, so every sequence has ``scored``
    positions to recall, whatever the delay. The recurrent hidden sizes are chosen to
    match the Transformer's parameter count (:func:`recurrent_hidden_for`). Training
    uses ``num_threads`` threads (:func:`torch_threads`).
    """
    max_len = max(delays) + scored

    def transformer() -> nn.Module:
        return RecallTransformer(vocab_size, max_len, d_model, n_heads, n_layers)

    budget = count_parameters(transformer())
    hidden = {kind: recurrent_hidden_for(budget, kind, vocab_size) for kind in ("rnn", "lstm")}
    makers: dict[str, Callable[[], nn.Module]] = {
        f"tanh RNN (H={hidden['rnn']})": lambda: RecurrentTagger(vocab_size, hidden["rnn"], "rnn"),
        f"LSTM (H={hidden['lstm']})": lambda: RecurrentTagger(vocab_size, hidden["lstm"], "lstm"),
        f"Transformer ({n_layers} layer{'s' if n_layers > 1 else ''}, d={d_model})": transformer,
    }
    accuracy: dict[str, list[float]] = {name: [] for name in makers}
    n_params = {name: count_parameters(make()) for name, make in makers.items()}
    models: dict[str, nn.Module] = {}
    runs = [(delay, name) for delay in delays for name in makers]
    with torch_threads(num_threads):
        for delay, name in tqdm(runs, desc="recall"):
            torch.manual_seed(seed)
            models[name] = makers[name]()
            length = delay + scored
            train_recall(models[name], delay, length, steps, batch, vocab_size, lr, seed)
            accuracy[name].append(recall_accuracy(models[name], delay, length, vocab_size=vocab_size))
    return RecallResult(list(delays), accuracy, n_params, 1.0 / vocab_size, models)


# =========================================================================== scalability


def non_embedding_parameters(model: nn.Module) -> int:
    """Parameters outside the token and position embeddings of a chapter 06 ``GPT``, the
    size that scaling laws count (Kaplan et al., 2020). The tied output head is the
    token embedding, so it is not counted either."""
    return sum(p.numel() for name, p in model.named_parameters()
               if not name.startswith(("tok_emb.", "pos_emb.")))


@dataclass
class ScalingRun:
    """One model of the scaling curve and how it did."""

    d_model: int
    n_layers: int
    n_params: int
    val_loss: float
    train_losses: list[float]


def scaling_experiment(
    sizes: list[tuple[int, int]],
    steps: int,
    batch_size: int = 32,
    block_size: int = 64,
    lr: float = 3e-3,
    head_dim: int = 8,
    val_batches: int = 4,
    seed: int = 0,
    num_threads: int | None = 1,
) -> list[ScalingRun]:
    """Train one chapter 06 ``GPT`` per ``(d_model, n_layers)`` in ``sizes`` on the
    bundled character-level corpus, all with the same budget (``steps`` batches of
    ``batch_size x block_size`` tokens, the same batches in the same order), and measure
    each one's validation loss (nats per character).

    Heads have ``head_dim`` channels each, so ``d_model`` must be a multiple of it.
    Training uses ``num_threads`` threads (:func:`torch_threads`).
    """
    from transformer_course.corpus import get_batch, load_corpus
    from transformer_course.gpt import GPT, next_token_loss
    from transformer_course.training import train_loop

    corpus = load_corpus()
    val_generator = torch.Generator().manual_seed(seed + 1)
    val = [get_batch(corpus.val, 64, block_size, val_generator) for _ in range(val_batches)]
    runs = []
    with torch_threads(num_threads):
        for d_model, n_layers in sizes:
            if d_model % head_dim:
                raise ValueError(f"d_model={d_model} is not a multiple of head_dim={head_dim}")
            torch.manual_seed(seed)
            model = GPT(corpus.tokenizer.vocab_size, block_size, d_model, d_model // head_dim, n_layers)
            optimizer = torch.optim.AdamW(model.parameters(), lr=lr, fused=True)
            generator = torch.Generator().manual_seed(seed)

            def next_batch(step: int, generator: torch.Generator = generator) -> tuple[Tensor]:
                return (get_batch(corpus.train, batch_size, block_size, generator),)

            losses = train_loop(
                model, optimizer, next_batch, lambda m, x: next_token_loss(m(x), x), steps,
                desc=f"d_model={d_model}, {n_layers} layer{'s' if n_layers > 1 else ''}",
            )
            with torch.no_grad(), fused_kernels(model):
                val_loss = sum(next_token_loss(model(x), x).item() for x in val) / len(val)
            runs.append(ScalingRun(d_model, n_layers, non_embedding_parameters(model), val_loss, losses))
    return runs


# =========================================================================== contextual understanding


@torch.no_grad()
def word_vectors(
    model: nn.Module, sentences: list[str], word: str, num_threads: int | None = 1
) -> tuple[Tensor, Tensor]:
    """The vectors of ``word`` in each sentence, before and after the encoder layers.

    ``model`` is chapter 04's MiniLM (``transformer_course.pretrained.minilm``). "Before"
    is what enters the first encoder layer (word, position and token-type embeddings,
    normalised): the same word differs there only by its position. "After" is the last
    layer's output, which has mixed in the rest of the sentence through attention.

    Args:
        model: a loaded MiniLM.
        sentences: ``B`` sentences that each contain ``word``.
        word: a word the tokenizer keeps as one word piece (lower case), e.g. "bank".
        num_threads: torch threads for the forward pass (:func:`torch_threads`).

    Returns:
        ``before (B, D)`` and ``after (B, D)``, from the first occurrence of ``word``.
    """
    ids, mask, tokens = model.tokenize(sentences)
    where = []
    for sentence, pieces in zip(sentences, tokens, strict=True):
        if word not in pieces:
            raise ValueError(
                f"{word!r} is not a word piece of {sentence!r} (its pieces: {pieces}); choose "
                "a word the tokenizer keeps whole, in lower case, present in every sentence"
            )
        where.append(pieces.index(word))
    captured: list[Tensor] = []
    hook = model.layers[0].register_forward_pre_hook(lambda module, args: captured.append(args[0]))
    try:
        with torch_threads(num_threads):
            after = model(ids, mask)
    finally:
        hook.remove()
    rows = torch.arange(len(sentences))
    index = torch.tensor(where)
    return captured[0][rows, index], after[rows, index]
