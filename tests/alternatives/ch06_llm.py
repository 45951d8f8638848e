"""Correct answers to chapter 6, written the ways students write them
(``ALTERNATIVES`` maps an exercise to its variants). The samplers draw from the right
distribution without ``torch.multinomial``: the Gumbel-max trick and the inverse CDF."""

import math

import torch
import torch.nn.functional as F
from torch import nn

from transformer_course.encoder import FeedForward
from transformer_course.multi_head import MultiHeadAttention


def train_bpe_dict_counts(text, vocab_size):
    ids = list(text.encode("utf-8"))
    merges = []
    while len(merges) < vocab_size - 256 and len(ids) > 1:
        counts = {}
        for pair in zip(ids, ids[1:], strict=False):
            counts[pair] = counts.get(pair, 0) + 1  # dicts keep first-occurrence order
        pair = max(counts, key=counts.get)  # max returns the first of equal counts
        new_id = 256 + len(merges)
        merges.append(pair)
        out, i = [], 0
        while i < len(ids):
            if i < len(ids) - 1 and (ids[i], ids[i + 1]) == pair:
                out.append(new_id)
                i += 2
            else:
                out.append(ids[i])
                i += 1
        ids = out
    return merges


def train_bpe_scan(text, vocab_size):
    ids = list(text.encode())
    merges = []
    for new_id in range(256, vocab_size):
        pairs = list(zip(ids[:-1], ids[1:], strict=True))
        if not pairs:
            break
        best, best_count = None, 0
        for pair in pairs:  # first occurrence wins a tie: only a larger count replaces it
            count = pairs.count(pair) if pair != best else best_count
            if count > best_count:
                best, best_count = pair, count
        merges.append(best)
        merged, skip = [], False
        for i, token in enumerate(ids):
            if skip:
                skip = False
            elif i + 1 < len(ids) and (token, ids[i + 1]) == best:
                merged.append(new_id)
                skip = True
            else:
                merged.append(token)
        ids = merged
    return merges


def _merge(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def bpe_encode_in_order(text, merges):
    """Apply every merge once, in training order."""
    ids = list(text.encode("utf-8"))
    for n, pair in enumerate(merges):
        ids = _merge(ids, tuple(pair), 256 + n)
    return ids


def bpe_encode_lowest_rank(text, merges):
    ranks = {tuple(p): i for i, p in enumerate(merges)}
    ids = list(text.encode("utf-8"))
    while True:
        candidates = [(ranks[p], p) for p in zip(ids, ids[1:], strict=False) if p in ranks]
        if not candidates:
            return ids
        rank, pair = min(candidates)
        ids = _merge(ids, pair, 256 + rank)


def bpe_decode_vocab(ids, merges):
    vocab = {i: bytes([i]) for i in range(256)}
    for n, (a, b) in enumerate(merges):
        vocab[256 + n] = vocab[a] + vocab[b]
    return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")


def bpe_decode_recursive(ids, merges):
    def expand(token):
        if token < 256:
            return [token]
        a, b = merges[token - 256]
        return expand(a) + expand(b)

    data = bytearray()
    for token in ids:
        data.extend(expand(token))
    return bytes(data).decode("utf-8", "replace")


class GPTBlockSplitCache(nn.Module):
    """Keys and values kept in the cache object, a mask built with ``triu``."""

    def __init__(self, d_model, n_heads, d_ff, dropout=0.0):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = FeedForward(d_model, d_ff, dropout, activation="gelu")

    def forward(self, x, cache=None):
        h = self.ln1(x)
        a = self.attn
        b, length, d = h.shape
        dh = d // a.n_heads
        q = a.w_q(h).view(b, length, a.n_heads, dh).transpose(1, 2)
        k = a.w_k(h).view(b, length, a.n_heads, dh).transpose(1, 2)
        v = a.w_v(h).view(b, length, a.n_heads, dh).transpose(1, 2)
        if cache is not None:
            k, v = cache.update(k, v)
        total = k.size(2)
        future = torch.triu(torch.ones(length, total, dtype=torch.bool), diagonal=total - length + 1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(dh)
        weights = scores.masked_fill(future, float("-inf")).softmax(-1)
        out = (weights @ v).transpose(1, 2).reshape(b, length, d)
        x = x + a.w_o(out)
        return x + self.mlp(self.ln2(x))


class GPTBlockFunctional(nn.Module):
    """``F.scaled_dot_product_attention`` with its own causal flag (not a forbidden call
    here), the cached path through an explicit mask."""

    def __init__(self, d_model, n_heads, d_ff, dropout=0.0):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = FeedForward(d_model, d_ff, dropout, "gelu")

    def _heads(self, t):
        return t.unflatten(-1, (self.attn.n_heads, -1)).transpose(1, 2)

    def forward(self, x, cache=None):
        h = self.ln1(x)
        q, k, v = (self._heads(p(h)) for p in (self.attn.w_q, self.attn.w_k, self.attn.w_v))
        if cache is None:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            k, v = cache.update(k, v)
            start = k.size(2) - q.size(2)
            rows = torch.arange(start, k.size(2))[:, None]
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=torch.arange(k.size(2)) <= rows)
        x = x + self.attn.w_o(out.transpose(1, 2).flatten(-2))
        return x + self.mlp(self.ln2(x))


class _Cache:
    def __init__(self):
        self.k = self.v = None

    def __len__(self):
        return 0 if self.k is None else self.k.size(-2)

    def update(self, k, v):
        self.k = k if self.k is None else torch.cat([self.k, k], dim=-2)
        self.v = v if self.v is None else torch.cat([self.v, v], dim=-2)
        return self.k, self.v


class GPTOffset(nn.Module):
    """Its own cache class; the head tied by assigning the embedding's Parameter."""

    def __init__(self, vocab_size, max_len, d_model, n_heads, n_layers, d_ff=None, dropout=0.0):
        super().__init__()
        self.max_len = max_len
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = nn.Embedding(max_len, d_model)
        self.blocks = nn.ModuleList(
            GPTBlockSplitCache(d_model, n_heads, d_ff or 4 * d_model, dropout) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        self.lm_head.weight = self.tok_emb.weight

    def new_cache(self):
        return [_Cache() for _ in range(len(self.blocks))]

    def forward(self, idx, cache=None):
        offset = len(cache[0]) if cache else 0
        pos = torch.arange(offset, offset + idx.shape[1])
        x = self.tok_emb(idx) + self.pos_emb(pos)[None]
        for block, layer_cache in zip(self.blocks, cache or [None] * len(self.blocks), strict=True):
            x = block(x, layer_cache)
        return self.lm_head(self.ln_f(x))


class GPTTiedMatmul(nn.Module):
    """The head as a product with the embedding matrix (``lm_head`` shares it)."""

    def __init__(self, vocab_size, max_len, d_model, n_heads, n_layers, d_ff=None, dropout=0.0):
        super().__init__()
        self.max_len = max_len
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = nn.Embedding(max_len, d_model)
        self.blocks = nn.ModuleList([
            GPTBlockFunctional(d_model, n_heads, d_ff if d_ff else 4 * d_model, dropout)
            for _ in range(n_layers)])
        self.ln_f = nn.LayerNorm(d_model)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        self.lm_head.weight = self.tok_emb.weight

    def new_cache(self):
        return [_Cache() for _ in self.blocks]

    def forward(self, idx, cache=None):
        seen = 0 if cache is None else len(cache[0])
        x = self.tok_emb(idx) + self.pos_emb.weight[seen : seen + idx.size(1)]
        for i, block in enumerate(self.blocks):
            x = block(x, cache[i] if cache is not None else None)
        return self.ln_f(x) @ self.tok_emb.weight.T


def next_token_loss_log_softmax(logits, tokens):
    logp = logits[:, :-1].log_softmax(dim=-1)
    picked = logp.gather(-1, tokens[:, 1:, None]).squeeze(-1)
    return -picked.mean()


def next_token_loss_nll(logits, tokens):
    b, length, v = logits.shape
    predictions = logits[:, : length - 1].reshape(-1, v)
    targets = tokens[:, 1:].reshape(-1)
    return F.nll_loss(F.log_softmax(predictions, dim=-1), targets)


def _filter(logits, temperature, top_k, top_p):
    """Temperature, top-k and top-p as the chapter states them; -inf marks dropped tokens."""
    logits = logits / temperature
    if top_k is not None:
        k = min(top_k, logits.size(-1))
        threshold = torch.topk(logits, k, dim=-1).values[:, -1, None]
        logits = torch.where(logits >= threshold, logits, torch.full_like(logits, -math.inf))
    if top_p is not None:
        probs = logits.softmax(-1)
        sorted_probs, order = probs.sort(-1, descending=True)
        mass_before = sorted_probs.cumsum(-1) - sorted_probs
        keep_sorted = mass_before < top_p
        keep = torch.empty_like(keep_sorted).scatter_(-1, order, keep_sorted)
        logits = logits.masked_fill(~keep, -math.inf)
    return logits


def sample_next_token_gumbel(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    """The Gumbel-max trick: argmax(logits + Gumbel noise) is a sample of softmax(logits)."""
    if temperature == 0:
        return logits.argmax(-1)
    logits = _filter(logits.double(), temperature, top_k, top_p)
    uniform = torch.rand(logits.shape, generator=generator, dtype=torch.float64)
    gumbel = -torch.log(-torch.log(uniform.clamp_min(1e-300)))
    return (logits + gumbel).argmax(-1)


def sample_next_token_inverse_cdf(logits, temperature=1.0, top_k=None, top_p=None,
                                  generator=None):
    """One uniform number per row, looked up in the cumulative distribution."""
    if temperature == 0:
        return torch.argmax(logits, dim=-1)
    probs = F.softmax(_filter(logits, temperature, top_k, top_p), dim=-1)
    cdf = probs.cumsum(-1)
    u = torch.rand(probs.size(0), 1, generator=generator, dtype=probs.dtype) * cdf[:, -1:]
    token = torch.searchsorted(cdf, u, right=True).squeeze(-1)
    return token.clamp(max=probs.size(-1) - 1)


@torch.no_grad()
def generate_preallocated(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None,
                          generator=None, use_cache=False):
    """The output tensor made once and filled in; the student's own sampler."""
    b, length = idx.shape
    out = torch.empty(b, length + max_new_tokens, dtype=idx.dtype)
    out[:, :length] = idx
    cache = model.new_cache() if use_cache else None
    for t in range(length, length + max_new_tokens):
        if cache is None:
            logits = model(out[:, max(0, t - model.max_len) : t])
        elif t == length:
            logits = model(out[:, :t], cache=cache)
        else:
            logits = model(out[:, t - 1 : t], cache=cache)
        out[:, t] = sample_next_token_gumbel(logits[:, -1, :], temperature, top_k, top_p, generator)
    return out


@torch.no_grad()
def generate_append(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None,
                    generator=None, use_cache=False):
    """A list of columns, joined at the end; the inverse-CDF sampler."""
    columns = list(idx.unbind(1))
    cache = model.new_cache() if use_cache else None
    feed = idx
    for _ in range(max_new_tokens):
        if cache is None:
            feed = torch.stack(columns[-model.max_len:], dim=1)
        logits = model(feed, cache)[:, -1]
        token = sample_next_token_inverse_cdf(logits, temperature, top_k, top_p, generator)
        columns.append(token)
        feed = token[:, None]
    return torch.stack(columns, dim=1)


ALTERNATIVES = {
    "train_bpe": [train_bpe_dict_counts, train_bpe_scan],
    "bpe_encode": [bpe_encode_in_order, bpe_encode_lowest_rank],
    "bpe_decode": [bpe_decode_vocab, bpe_decode_recursive],
    "GPTBlock": [GPTBlockSplitCache, GPTBlockFunctional],
    "GPT": [GPTOffset, GPTTiedMatmul],
    "next_token_loss": [next_token_loss_log_softmax, next_token_loss_nll],
    "sample_next_token": [sample_next_token_gumbel, sample_next_token_inverse_cdf],
    "generate": [generate_preallocated, generate_append],
}
