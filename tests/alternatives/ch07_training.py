"""Correct answers to chapter 7, written the ways students write them
(``ALTERNATIVES`` maps an exercise to its variants): other formulas for the loss and
the update, loops instead of vectorised code, other ways to read a memory map, and a
tokenizer trained without the incremental update, and training loops written with a
for loop over a tqdm range or with the bookkeeping in a class."""

import math
import os
from collections import Counter

import numpy as np
import regex
import torch
from tqdm.auto import tqdm

from transformer_course.batches import sample_batch
from transformer_course.checkpoint import load_checkpoint, save_checkpoint
from transformer_course.optim import cosine_schedule
from transformer_course.tokenizer import GPT2_PATTERN
from transformer_course.train import estimate_loss, make_optimizer, train_step

# --------------------------------------------------------------------------- cross_entropy


def cross_entropy_onehot(logits, targets, ignore_index=-100):
    z = logits.flatten(0, -2)
    t = targets.flatten()
    keep = t != ignore_index
    shifted = z - z.amax(dim=-1, keepdim=True)
    log_probs = shifted - shifted.exp().sum(dim=-1, keepdim=True).log()
    onehot = torch.zeros_like(z).scatter_(-1, t.clamp(min=0)[:, None], 1.0)
    per_token = -(log_probs * onehot).sum(dim=-1)
    return per_token[keep].sum() / keep.sum()


def cross_entropy_loop(logits, targets, ignore_index=-100):
    z = logits.reshape(-1, logits.shape[-1])
    total, count = torch.zeros((), dtype=logits.dtype), 0
    for row, target in zip(z, targets.reshape(-1).tolist(), strict=True):
        if target == ignore_index:
            continue
        m = row.max()
        total = total + m + torch.log(torch.sum(torch.exp(row - m))) - row[target]
        count += 1
    return total / count


# --------------------------------------------------------------------------- AdamW


class AdamWTorchForm(torch.optim.Optimizer):
    """The form of torch's single-tensor AdamW: lerp for m, step size lr / bc1."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                t = state["step"].item()
                p.mul_(1 - group["lr"] * group["weight_decay"])
                state["exp_avg"].lerp_(p.grad, 1 - beta1)
                state["exp_avg_sq"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                denom = (state["exp_avg_sq"].sqrt() / math.sqrt(1 - beta2**t)).add_(group["eps"])
                p.addcdiv_(state["exp_avg"], denom, value=-group["lr"] / (1 - beta1**t))
        return None


class AdamWFunctional(torch.optim.Optimizer):
    """Out-of-place arithmetic, the update written as m_hat / (sqrt(v_hat) + eps)."""

    def __init__(self, params, lr=0.001, betas=(0.9, 0.999), eps=1e-08, weight_decay=0.01):
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay}
        super().__init__(params, defaults)

    def step(self, closure=None):
        loss = closure() if closure is not None else None
        with torch.no_grad():
            for group in self.param_groups:
                b1, b2 = group["betas"]
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    s = self.state[p]
                    t = s.get("t", 0) + 1
                    m = b1 * s.get("m", torch.zeros_like(p)) + (1 - b1) * p.grad
                    v = b2 * s.get("v", torch.zeros_like(p)) + (1 - b2) * p.grad**2
                    s.update(t=t, m=m, v=v)
                    decayed = p * (1 - group["lr"] * group["weight_decay"])
                    update = (m / (1 - b1**t)) / (torch.sqrt(v / (1 - b2**t)) + group["eps"])
                    p.copy_(decayed - group["lr"] * update)
        return loss


# --------------------------------------------------------------------------- cosine_schedule


def cosine_schedule_branches(step, max_lr, min_lr, warmup_steps, total_steps):
    if step < warmup_steps:
        return (step + 1) / warmup_steps * max_lr
    if step > total_steps:
        return min_lr
    angle = math.pi * (step - warmup_steps) / (total_steps - warmup_steps)
    return min_lr + 0.5 * (max_lr - min_lr) * (1.0 + math.cos(angle))


def cosine_schedule_torch(step, max_lr, min_lr, warmup_steps, total_steps):
    s = torch.tensor(float(step), dtype=torch.float64)
    warm = max_lr * (s + 1) / max(warmup_steps, 1)
    progress = ((s - warmup_steps) / (total_steps - warmup_steps)).clamp(0.0, 1.0)
    decay = min_lr + (max_lr - min_lr) * (torch.cos(torch.pi * progress) + 1) / 2
    return float(torch.where(s < warmup_steps, warm, decay))


# --------------------------------------------------------------------------- clip_grad_norm


def clip_grad_norm_flat(parameters, max_norm):
    grads = [p.grad for p in parameters if p.grad is not None]
    total = torch.linalg.vector_norm(torch.cat([g.reshape(-1) for g in grads]))
    if total > max_norm:
        factor = max_norm / (total + 1e-6)
        for g in grads:
            g *= factor
    return total


def clip_grad_norm_norms(parameters, max_norm):
    grads = [p.grad for p in parameters if p.grad is not None]
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        g.mul_(coef)
    return total


# --------------------------------------------------------------------------- sample_batch


def sample_batch_index(tokens, batch_size, context_length, device="cpu", generator=None):
    starts = torch.randint(len(tokens) - context_length, (batch_size,), generator=generator).numpy()
    index = starts[:, None] + np.arange(context_length + 1)[None, :]
    window = torch.from_numpy(tokens[index].astype(np.int64))
    return window[:, :-1].to(device), window[:, 1:].to(device)


def sample_batch_loop(tokens, batch_size, context_length, device="cpu", generator=None):
    starts = torch.randint(0, len(tokens) - context_length, (batch_size,), generator=generator)
    xs, ys = [], []
    for s in starts.tolist():
        xs.append(torch.tensor(tokens[s : s + context_length].tolist()))
        ys.append(torch.tensor(tokens[s + 1 : s + 1 + context_length].tolist()))
    return torch.stack(xs).long().to(device), torch.stack(ys).long().to(device)


# --------------------------------------------------------------------------- checkpoints


def save_checkpoint_file_object(path, model, optimizer, step, generator):
    with open(path, "wb") as f:
        torch.save({"step": step, "rng": generator.get_state().clone(),
                    "model": {k: v.detach().clone() for k, v in model.state_dict().items()},
                    "optimizer": optimizer.state_dict()}, f)


def save_checkpoint_atomic(path, model, optimizer, step, generator):
    partial = str(path) + ".partial"  # a crash while writing leaves the old checkpoint
    torch.save(dict(model=model.state_dict(), optimizer=optimizer.state_dict(), step=int(step),
                    rng=generator.get_state()), partial)
    os.replace(partial, path)


def load_checkpoint_weights_only(path, model, optimizer, generator):
    state = torch.load(path, weights_only=True)
    model.load_state_dict(state["model"], strict=True)
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["rng"])
    return state["step"]


def load_checkpoint_file_object(path, model, optimizer, generator):
    with open(path, "rb") as f:
        ckpt = torch.load(f, map_location="cpu")
    for name, value in ckpt["model"].items():
        model.state_dict()[name].copy_(value)
    optimizer.load_state_dict(ckpt["optimizer"])
    generator.set_state(ckpt["rng"].clone())
    return int(ckpt["step"])


# --------------------------------------------------------------------------- train_step


def _ce(logits, y):
    z = logits.reshape(-1, logits.size(-1))
    m = z.max(dim=-1, keepdim=True).values
    lse = (z - m).exp().sum(dim=-1).log() + m.squeeze(-1)
    return (lse - z.gather(1, y.reshape(-1, 1)).squeeze(1)).mean()


def train_step_manual_clip(model, optimizer, x, y, lr, max_grad_norm=1.0):
    optimizer.zero_grad()
    for group in optimizer.param_groups:
        group["lr"] = lr
    loss = _ce(model(x), y)
    loss.backward()
    if max_grad_norm is not None:
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        norm = torch.sqrt(sum((g**2).sum() for g in grads))
        scale = min(1.0, max_grad_norm / (norm.item() + 1e-6))
        for g in grads:
            g.mul_(scale)
    optimizer.step()
    return float(loss)


def train_step_no_grad_none(model, optimizer, x, y, lr, max_grad_norm=1.0):
    for p in model.parameters():
        p.grad = None
    optimizer.param_groups[0]["lr"] = lr
    for group in optimizer.param_groups[1:]:
        group["lr"] = lr
    logits = model(x)
    loss = -torch.log_softmax(logits.double(), dim=-1).gather(-1, y[..., None]).mean().to(logits.dtype)
    loss.backward()
    if max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    return loss.detach().item()


# --------------------------------------------------------------------------- Tokenizer


class TokenizerBytesLoop:
    """Encodes with a priority scan over byte strings, one merge at a time."""

    def __init__(self, vocab, merges, special_tokens=None, pattern=GPT2_PATTERN):
        self.vocab = vocab
        self.inverse = {}
        for i in sorted(vocab):
            self.inverse.setdefault(vocab[i], i)
        self.ranks = {tuple(m): r for r, m in enumerate(merges)}
        self.special = sorted(special_tokens or [], key=len, reverse=True)
        self.pattern = regex.compile(pattern)

    def _piece(self, piece):
        parts = [bytes([b]) for b in piece.encode("utf-8")]
        while True:
            best, where = None, None
            for i in range(len(parts) - 1):
                r = self.ranks.get((parts[i], parts[i + 1]))
                if r is not None and (best is None or r < best):
                    best, where = r, i
            if best is None:
                return [self.inverse[p] for p in parts]
            parts[where : where + 2] = [parts[where] + parts[where + 1]]  # leftmost of the lowest rank

    def encode(self, text):
        out = []
        while text:
            hits = [(text.find(s), -len(s), s) for s in self.special if s in text]
            if not hits:
                chunk, token, rest = text, None, ""
            else:
                at, _, token = min(hits)
                chunk, rest = text[:at], text[at + len(token):]
            for piece in self.pattern.findall(chunk):
                out.extend(self._piece(piece))
            if token is not None:
                out.append(self.inverse[token.encode("utf-8")])
            text = rest
        return out

    def decode(self, ids):
        return bytes(b for i in ids for b in self.vocab[i]).decode("utf-8", "replace")


class TokenizerCachedRegex:
    """Splits specials with one regex, pieces by finditer; merges by rank with a cache."""

    def __init__(self, vocab, merges, special_tokens=None, pattern=GPT2_PATTERN):
        self.vocab = dict(vocab)
        self.token_id = {b: i for i, b in sorted(self.vocab.items(), reverse=True)}
        self.merge_rank = {(a, b): n for n, (a, b) in enumerate(merges)}
        self.specials = list(special_tokens or [])
        self.word = regex.compile(pattern)
        alternatives = "|".join(map(regex.escape, sorted(self.specials, key=lambda s: -len(s))))
        self.split = regex.compile(f"({alternatives})") if self.specials else None
        self.memo = {}

    def _bpe(self, piece):
        if piece not in self.memo:
            word = [bytes([b]) for b in piece.encode()]
            while len(word) > 1:
                ranked = [(self.merge_rank.get(pair, math.inf), pair)
                          for pair in zip(word, word[1:], strict=False)]
                rank, pair = min(ranked, key=lambda r: r[0])
                if rank == math.inf:
                    break
                merged, i = [], 0
                while i < len(word):
                    if i < len(word) - 1 and (word[i], word[i + 1]) == pair:
                        merged.append(word[i] + word[i + 1])
                        i += 2
                    else:
                        merged.append(word[i])
                        i += 1
                word = merged
            self.memo[piece] = [self.token_id[w] for w in word]
        return self.memo[piece]

    def encode(self, text):
        parts = self.split.split(text) if self.split else [text]
        ids = []
        for part in parts:
            if part in self.specials:
                ids.append(self.token_id[part.encode()])
            else:
                for match in self.word.finditer(part):
                    ids += self._bpe(match.group())
        return ids

    def decode(self, ids):
        return b"".join(map(self.vocab.__getitem__, ids)).decode(errors="replace")


# --------------------------------------------------------------------------- train_tokenizer


def _pieces(text, special_tokens, pattern):
    if special_tokens:
        text_parts = regex.split("|".join(map(regex.escape, special_tokens)), text)
    else:
        text_parts = [text]
    return Counter(p for part in text_parts for p in regex.findall(pattern, part))


def train_tokenizer_recount(text, vocab_size, special_tokens=None, pattern=GPT2_PATTERN):
    special_tokens = special_tokens or []
    pieces = _pieces(text, special_tokens, pattern)
    words = {tuple(bytes([b]) for b in w.encode()): n for w, n in pieces.items()}
    merges = []
    while len(merges) < vocab_size - 256 - len(special_tokens):
        counts = Counter()
        for word, n in words.items():
            for pair in zip(word, word[1:], strict=False):
                counts[pair] += n
        if not counts:
            break
        pair = max(counts, key=lambda p: (counts[p], p))
        merges.append(pair)
        new_words = {}
        for word, n in words.items():
            out, i = [], 0
            while i < len(word):
                if word[i : i + 2] == pair:
                    out.append(pair[0] + pair[1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            new_words[tuple(out)] = new_words.get(tuple(out), 0) + n
        words = new_words
    vocab = {i: bytes([i]) for i in range(256)}
    for a, b in merges:
        vocab[len(vocab)] = a + b
    for s in special_tokens:
        vocab[len(vocab)] = s.encode("utf-8")
    return vocab, merges


def train_tokenizer_ids(text, vocab_size, special_tokens=(), pattern=GPT2_PATTERN):
    """Works on ids, keeps pair counts in a dict updated piece by piece."""
    special_tokens = list(special_tokens or ())
    counts = _pieces(text, special_tokens, pattern)
    words = [list(w.encode()) for w in counts]
    freqs = list(counts.values())
    vocab = [bytes([i]) for i in range(256)]
    pairs = Counter()
    for w, f in zip(words, freqs, strict=False):
        for p in zip(w, w[1:], strict=False):
            pairs[p] += f
    merges = []
    for _ in range(vocab_size - 256 - len(special_tokens)):
        pairs = +pairs  # drop zero counts
        if not pairs:
            break
        a, b = max(pairs, key=lambda p: (pairs[p], vocab[p[0]], vocab[p[1]]))
        new = len(vocab)
        vocab.append(vocab[a] + vocab[b])
        merges.append((vocab[a], vocab[b]))
        for k, (w, f) in enumerate(zip(words, freqs, strict=False)):
            if not any(x == a and y == b for x, y in zip(w, w[1:], strict=False)):
                continue
            for p in zip(w, w[1:], strict=False):
                pairs[p] -= f
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    out.append(new)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            words[k] = out
            for p in zip(out, out[1:], strict=False):
                pairs[p] += f
    vocab += [s.encode() for s in special_tokens]
    return dict(enumerate(vocab)), merges


# --------------------------------------------------------------------------- train
# The pieces are looked up by name (the check puts its stand-ins in their place).


def train_for_range(model, train_tokens, val_tokens, steps, batch_size, context_length, max_lr=2e-3,
                    min_lr=2e-4, warmup_steps=100, weight_decay=0.1, max_grad_norm=1.0, eval_interval=250,
                    eval_batches=20, seed=0, device=None, checkpoint=None, checkpoint_interval=None,
                    resume=False, stop_after=None, progress=True, fused=False):
    """A for loop over a tqdm range; the evaluations are kept as tuples until the end."""
    model.to(device).train()
    optimizer = make_optimizer(model, max_lr, weight_decay)
    rng = torch.Generator()
    rng.manual_seed(seed)
    start = load_checkpoint(checkpoint, model, optimizer, rng) if resume else 0
    end = min(steps, stop_after if stop_after is not None else steps)
    evals, losses = [], []

    def measure(at):
        evals.append((at, estimate_loss(model, train_tokens, batch_size, context_length, eval_batches),
                      estimate_loss(model, val_tokens, batch_size, context_length, eval_batches)))

    for step in tqdm(range(start, end), disable=not progress):
        if step % eval_interval == 0:
            measure(step)
        x, y = sample_batch(train_tokens, batch_size, context_length, device, rng)
        losses.append(train_step(model, optimizer, x, y,
                                 cosine_schedule(step, max_lr, min_lr, warmup_steps, steps), max_grad_norm))
        done = step + 1
        interval_due = checkpoint_interval is not None and done % checkpoint_interval == 0
        if checkpoint and (done == end or interval_due):
            save_checkpoint(checkpoint, model, optimizer, done, rng)
    if max(start, end) == steps:
        measure(steps)
    model.eval()
    return {"step": [e[0] for e in evals], "train_loss": [e[1] for e in evals],
            "val_loss": [e[2] for e in evals], "batch_loss": losses, "first_step": start, "seconds": 0.0}


class _Run:
    """The state of one training call: the step, the generator and the history."""

    def __init__(self, model, optimizer, seed, checkpoint, resume):
        self.model, self.optimizer = model, optimizer
        self.generator = torch.Generator().manual_seed(seed)
        self.step = int(load_checkpoint(checkpoint, model, optimizer, self.generator)) if resume else 0
        self.history = {"step": [], "train_loss": [], "val_loss": [], "batch_loss": [],
                        "first_step": self.step, "seconds": 0.0}

    def evaluate(self, splits, *args):
        self.history["step"].append(self.step)
        for key, tokens in splits.items():
            self.history[key].append(estimate_loss(self.model, tokens, *args))


def train_with_state(model, train_tokens, val_tokens, steps, batch_size, context_length, max_lr=2e-3,
                     min_lr=2e-4, warmup_steps=100, weight_decay=0.1, max_grad_norm=1.0, eval_interval=250,
                     eval_batches=20, seed=0, device=None, checkpoint=None, checkpoint_interval=None,
                     resume=False, stop_after=None, progress=True, fused=False):
    """The bookkeeping in a small class; a manually updated bar; saves tested with any()."""
    model.to(device).train()
    run = _Run(model, make_optimizer(model, max_lr, weight_decay), seed, checkpoint, resume)
    splits = {"train_loss": train_tokens, "val_loss": val_tokens}
    last = steps if stop_after is None else min(steps, stop_after)
    with tqdm(total=last, initial=run.step, disable=not progress) as bar:
        while run.step < last:
            if not run.step % eval_interval:
                run.evaluate(splits, batch_size, context_length, eval_batches)
            lr = cosine_schedule(run.step, max_lr, min_lr, warmup_steps, steps)
            batch = sample_batch(train_tokens, batch_size, context_length, device, run.generator)
            run.history["batch_loss"].append(train_step(model, run.optimizer, *batch, lr, max_grad_norm))
            run.step += 1
            bar.update(1)
            every = checkpoint_interval or 0
            if checkpoint is not None and any([run.step == last, every and run.step % every == 0]):
                save_checkpoint(checkpoint, model, run.optimizer, run.step, run.generator)
    if run.step == steps:
        run.evaluate(splits, batch_size, context_length, eval_batches)
    model.eval()
    return run.history


ALTERNATIVES = {
    "cross_entropy": [cross_entropy_onehot, cross_entropy_loop],
    "AdamW": [AdamWTorchForm, AdamWFunctional],
    "cosine_schedule": [cosine_schedule_branches, cosine_schedule_torch],
    "clip_grad_norm": [clip_grad_norm_flat, clip_grad_norm_norms],
    "sample_batch": [sample_batch_index, sample_batch_loop],
    "save_checkpoint": [save_checkpoint_file_object, save_checkpoint_atomic],
    "load_checkpoint": [load_checkpoint_weights_only, load_checkpoint_file_object],
    "train_step": [train_step_manual_clip, train_step_no_grad_none],
    "Tokenizer": [TokenizerBytesLoop, TokenizerCachedRegex],
    "train_tokenizer": [train_tokenizer_recount, train_tokenizer_ids],
    "train": [train_for_range, train_with_state],
}
