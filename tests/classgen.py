"""A synthetic class of submissions for chapters 1 and 2, for the instructor tools.

Each student writes every exercise independently: a structure and a way to write each
step drawn from the many natural ones (``x.amax(...)`` or ``torch.max(...)[0]``,
``k.transpose(-2, -1)`` or ``k.mT``, a loop or a comparison of ``arange``s, ...), about one
answer in seven with a real bug, in the student's own style (variable names, comments,
docstrings, indentation, spacing, quotes, function order). Some students copy: they take
another student's answers and change every surface (names, comments, formatting, order);
one of them also rewrites one exercise of
chapter 1. About a third submit a notebook (the released
notebook with their answers in the exercise cells), the rest a ``.py`` file.

``python tests/classgen.py OUT --students 500`` writes a class to disk.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHAPTERS = ("01_attention", "02_multi_head_attention")

NAMES = {  # role -> spellings a student may choose for that local variable
    "mx": ["m", "x_max", "maxes", "row_max", "mx", "biggest", "peak", "top"],
    "sh": ["z", "shifted", "x_shift", "stable", "centered", "xs", "diff"],
    "ex": ["e", "exps", "ex", "exp_x", "numer", "num", "expd"],
    "tot": ["total", "denom", "norm", "sums", "z_sum", "den", "partition"],
    "d": ["d", "d_k", "dk", "dim_k", "depth", "scale_dim", "n_feat"],
    "kt": ["kt", "k_t", "keys_t", "k_T", "kT", "k_tr"],
    "sc": ["scores", "logits", "att", "sc", "energy", "raw", "qk"],
    "m": ["mask", "msk", "tri", "causal", "lower", "allowed", "keep"],
    "pos": ["pos", "positions", "idx", "steps", "ar", "ids", "cols"],
    "w": ["weights", "attn", "p", "probs", "alpha", "a", "attn_w"],
    "o": ["out", "output", "ctx", "context", "res", "y", "result"],
    "i": ["i", "row", "r", "t", "j"],
    "b": ["b", "batch", "bs", "n_batch", "B"],
    "l": ["l", "length", "seq", "seq_len", "L", "n_tok"],
    "dm": ["d_model", "dim", "D", "width", "hidden", "c"],
    "h": ["h", "heads", "H", "nh", "num_heads"],
    "dh": ["dh", "d_head", "head_dim", "hd", "per_head", "d_k"],
    "q": ["q", "queries", "qs", "q_h", "qh"],
    "k": ["k", "keys", "ks", "k_h", "kh"],
    "v": ["v", "values", "vs", "v_h", "vh"],
    "dha": ["d_head", "head_dim", "dk", "d_k", "hd"],
    "dra": ["dropout", "drop", "attn_drop", "dropper", "do"],
}
COMMENTS = [
    "# subtract the max for stability", "# scale by sqrt(d_k)", "# shape check",
    "# (B, H, L, Dh)", "# TODO: double check", "# as in the lecture", "# broadcast",
    "# keep dims so it broadcasts", "# masked positions get -inf", "# fully masked rows",
    "# this took me a while", "# transpose the last two dims", "# lower triangle",
    "# one row per sequence", "# heads first", "# project", "# back to (B, L, D)",
]
HABITS = [  # lines some students add at the top of a function
    "assert isinstance({first}, torch.Tensor)", "# print({first}.shape)",
    "{first} = torch.as_tensor({first})", "assert {first}.dim() >= 1, 'expected a tensor'",
    "if not torch.is_tensor({first}):\n    raise TypeError('expected a tensor')",
]
FIRST = ["ada", "alan", "grace", "edsger", "barbara", "donald", "frances", "john", "katherine",
         "leslie", "margaret", "niklaus", "radia", "tim", "shafi", "yoshua", "fei", "geoff",
         "judea", "hedy", "claude", "dennis", "ken", "guido", "linus", "sophie", "ivan",
         "jean", "karen", "robin"]


class Pick:
    """Draws an answer's structure: ``choice`` from the options, bugs with ``p_bug``."""

    def __init__(self, seed: str, p_bug: float = 0.15):
        self.rng = random.Random(seed)
        self.buggy = self.rng.random() < p_bug

    def __call__(self, options: list, bugs: list | None = None):
        if self.buggy and bugs and self.rng.random() < 0.6:
            self.buggy = False  # one bug per answer
            return self.rng.choice(bugs)
        return self.rng.choice(options)


# --------------------------------------------------------------------------- chapter 1


def softmax(p: Pick) -> tuple[str, str]:
    mx = p(["x.max(dim=dim, keepdim=True).values", "x.amax(dim=dim, keepdim=True)",
            "torch.max(x, dim=dim, keepdim=True)[0]", "torch.amax(x, dim, keepdim=True)",
            "x.max(dim, keepdim=True)[0]", "x.detach().amax(dim=dim, keepdim=True)"],
           ["x.max()", "0.0"])
    exp = p(["torch.exp({})", "{}.exp()"])
    total = p(["{}.sum(dim=dim, keepdim=True)", "torch.sum({}, dim=dim, keepdim=True)",
               "{}.sum(dim, keepdim=True)"], ["{}.sum(dim=dim)", "{}.sum()"])
    shape = p([0, 1, 2, 3, 4])
    body = {
        0: f"{{mx}} = {mx}\n{{sh}} = x - {{mx}}\n{{ex}} = {exp.format('{sh}')}\n"
           f"return {{ex}} / {total.format('{ex}')}",
        1: f"{{ex}} = {exp.format('(x - ' + mx + ')')}\nreturn {{ex}} / {total.format('{ex}')}",
        2: f"{{sh}} = x - {mx}\nreturn {exp.format('{sh}')} / {total.format(exp.format('{sh}'))}",
        3: f"{{ex}} = {exp.format('(x - ' + mx + ')')}\n{{tot}} = {total.format('{ex}')}\n"
           "return {ex} / {tot}",
        4: f"x = x - {mx}\nx = {exp.format('x')}\nreturn x / {total.format('x')}",
    }[shape]
    return "def softmax(x: Tensor, dim: int = -1) -> Tensor:", body


def attention_scores(p: Pick) -> tuple[str, str]:
    d = p(["q.size(-1)", "q.shape[-1]", "k.shape[-1]", "q.size()[-1]", "k.size(-1)"])
    kt = p(["k.transpose(-2, -1)", "k.transpose(-1, -2)", "k.mT", "k.swapaxes(-1, -2)",
            "torch.transpose(k, -2, -1)", "k.transpose(k.dim() - 2, k.dim() - 1)"])
    mm = p(["{} @ {}", "torch.matmul({}, {})"])
    scale = p(["/ math.sqrt({})", "/ {} ** 0.5", "* {} ** -0.5", "* (1.0 / math.sqrt({}))",
               "/ torch.sqrt(torch.tensor({}, dtype=q.dtype))"], ["/ {}", "/ math.sqrt({} + 1)"])
    shape = p([0, 1, 2, 3])
    body = {
        0: f"{{d}} = {d}\nreturn {mm.format('q', kt)} {scale.format('{d}')}",
        1: f"{{d}} = {d}\n{{kt}} = {kt}\n{{sc}} = {mm.format('q', '{kt}')}\n"
           f"return {{sc}} {scale.format('{d}')}",
        2: f"q = q {scale.format(d)}\nreturn {mm.format('q', kt)}",
        3: f"return ({mm.format('q', kt)}) {scale.format(d)}",
    }[shape]
    return "def attention_scores(q: Tensor, k: Tensor) -> Tensor:", body


def causal_mask(p: Pick) -> tuple[str, str]:
    body = p([
        "return torch.tril(torch.ones(seq_len, seq_len, dtype=torch.bool))",
        "return torch.ones(seq_len, seq_len, dtype=torch.bool).tril()",
        "return torch.ones(seq_len, seq_len).tril().bool()",
        "return ~torch.triu(torch.ones(seq_len, seq_len, dtype=torch.bool), diagonal=1)",
        "{pos} = torch.arange(seq_len)\nreturn {pos}[:, None] >= {pos}[None, :]",
        "{pos} = torch.arange(seq_len)\nreturn {pos}.unsqueeze(1) >= {pos}.unsqueeze(0)",
        "{m} = torch.zeros(seq_len, seq_len, dtype=torch.bool)\nfor {i} in range(seq_len):\n"
        "    {m}[{i}, :{i} + 1] = True\nreturn {m}",
        "{m} = torch.ones(seq_len, seq_len).tril()\nreturn {m} == 1",
        "return torch.tril(torch.ones((seq_len, seq_len))).to(torch.bool)",
        "{m} = torch.full((seq_len, seq_len), True)\nreturn torch.tril({m})",
    ], [
        "return torch.triu(torch.ones(seq_len, seq_len, dtype=torch.bool))",
        "return torch.tril(torch.ones(seq_len, seq_len))",
        "return torch.tril(torch.ones(seq_len, seq_len, dtype=torch.bool), diagonal=-1)",
    ])
    return "def causal_mask(seq_len: int) -> Tensor:", body


def padding_mask(p: Pick) -> tuple[str, str]:
    pos = p(["torch.arange(max_len)", "torch.arange(max_len, device=lengths.device)",
             "torch.arange(0, max_len)"])
    cmp = p(["{pos}[None, :] < lengths[:, None]", "{pos}.unsqueeze(0) < lengths.unsqueeze(1)",
             "{pos}.expand(len(lengths), max_len) < lengths.unsqueeze(-1)",
             "lengths[:, None] > {pos}[None, :]", "{pos}.view(1, -1) < lengths.view(-1, 1)"],
            ["{pos}[None, :] <= lengths[:, None]"])
    add = p(["({}).unsqueeze(1)", "({})[:, None, :]", "({}).view(len(lengths), 1, max_len)",
             "({}).unsqueeze(-2)"], ["{}"])
    body = p([
        f"return {add.format(cmp.format(pos=pos))}",
        f"{{pos}} = {pos}\nreturn {add.format(cmp.format(pos='{pos}'))}",
        f"{{pos}} = {pos}\n{{m}} = {cmp.format(pos='{pos}')}\nreturn {add.format('{m}')}",
        "{m} = torch.zeros(len(lengths), 1, max_len, dtype=torch.bool)\n"
        "for {i}, n in enumerate(lengths):\n    {m}[{i}, 0, :n] = True\nreturn {m}",
        "{m} = torch.zeros(lengths.shape[0], max_len, dtype=torch.bool)\n"
        "for {i} in range(lengths.shape[0]):\n    {m}[{i}, :lengths[{i}]] = True\n"
        "return {m}.unsqueeze(1)",
    ])
    return "def padding_mask(lengths: Tensor, max_len: int) -> Tensor:", body


def scaled_dot_product_attention(p: Pick) -> tuple[str, str]:
    scores = p(["attention_scores(q, k)", "attention_scores(q=q, k=k)",
                "q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))",
                "torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(k.shape[-1])"])
    fill = p(["{sc} = {sc}.masked_fill(~mask, float('-inf'))",
              "{sc} = {sc}.masked_fill(mask == 0, float('-inf'))",
              "{sc} = {sc}.masked_fill(mask.logical_not(), -torch.inf)",
              "{sc} = torch.where(mask, {sc}, torch.full_like({sc}, float('-inf')))",
              "{sc} = {sc}.masked_fill(~mask.bool(), -math.inf)",
              "{sc}[~mask.expand_as({sc})] = float('-inf')"],
             ["{sc} = {sc}.masked_fill(~mask, -1e9)", "{sc} = {sc}.masked_fill(mask, float('-inf'))"])
    soft = p(["softmax({sc}, dim=-1)", "softmax({sc})", "softmax({sc}, -1)"])
    nan = p(["{w} = {w}.nan_to_num(0.0)", "{w} = torch.nan_to_num({w})",
             "{w} = torch.nan_to_num({w}, nan=0.0)",
             "{w} = torch.where(torch.isnan({w}), torch.zeros_like({w}), {w})",
             "{w} = {w}.masked_fill(torch.isnan({w}), 0.0)", "{w} = {w}.masked_fill({w} != {w}, 0)"],
            ["pass"])
    mul = p(["{w} @ v", "torch.matmul({w}, v)", "torch.einsum('...qk,...kd->...qd', {w}, v)"])
    ret = p([f"return {mul}, {{w}}", f"{{o}} = {mul}\nreturn {{o}}, {{w}}"])
    guard = p(["if mask is not None:\n    " + fill,
               "if mask is None:\n    mask = torch.ones_like({sc}, dtype=torch.bool)\n" + fill])
    body = f"{{sc}} = {scores}\n{guard}\n{{w}} = {soft}\n{nan}\n{ret}"
    head = ("def scaled_dot_product_attention(\n    q: Tensor, k: Tensor, v: Tensor, "
            "mask: Tensor | None = None\n) -> tuple[Tensor, Tensor]:")
    return head, body.replace("\npass\n", "\n")


# --------------------------------------------------------------------------- chapter 2


def split_heads(p: Pick) -> tuple[str, str]:
    perm = p([".transpose(1, 2)", ".permute(0, 2, 1, 3)", ".transpose(2, 1)", ".swapaxes(1, 2)"])
    view = p(["x.view({b}, {l}, n_heads, {dm} // n_heads)", "x.reshape({b}, {l}, n_heads, -1)",
              "x.view({b}, {l}, n_heads, int({dm} / n_heads))", "x.unflatten(-1, (n_heads, -1))",
              "x.reshape(*x.shape[:-1], n_heads, {dm} // n_heads)",
              "x.view({b}, -1, n_heads, {dm} // n_heads)",
              "torch.stack(x.chunk(n_heads, dim=-1), dim=2)"],
             ["x.view({b}, n_heads, {l}, {dm} // n_heads)"])
    if "n_heads, {l}" in view:
        perm = ""
    shape = p(["{b}, {l}, {dm} = x.shape", "{b}, {l}, {dm} = x.size()",
               "{b} = x.shape[0]\n{l} = x.shape[1]\n{dm} = x.shape[2]"])
    tail = p(["", ".contiguous()"])
    body = p([f"{shape}\nreturn {view}{perm}{tail}",
              f"{shape}\nx = {view}\nreturn x{perm}{tail}"])
    return "def split_heads(x: Tensor, n_heads: int) -> Tensor:", body


def merge_heads(p: Pick) -> tuple[str, str]:
    perm = p([".transpose(1, 2)", ".permute(0, 2, 1, 3)", ".swapaxes(1, 2)", ".transpose(2, 1)"],
             [""])
    flat = p([".reshape({b}, {l}, {h} * {dh})", ".contiguous().view({b}, {l}, -1)",
              ".flatten(2)", ".reshape({b}, {l}, -1)", ".flatten(start_dim=-2)",
              ".contiguous().view({b}, {l}, {h} * {dh})", ".reshape(x.shape[0], x.shape[2], -1)"])
    shape = p(["{b}, {h}, {l}, {dh} = x.shape", "{b}, {h}, {l}, {dh} = x.size()"])
    body = p([f"{shape}\nreturn x{perm}{flat}", f"{shape}\nx = x{perm}\nreturn x{flat}"])
    return "def merge_heads(x: Tensor) -> Tensor:", body


def multi_head_attention(p: Pick) -> tuple[str, str]:
    proj = p(["self.w_q = nn.Linear(d_model, d_model, bias=bias)\n"
              "self.w_k = nn.Linear(d_model, d_model, bias=bias)\n"
              "self.w_v = nn.Linear(d_model, d_model, bias=bias)\n"
              "self.w_o = nn.Linear(d_model, d_model, bias=bias)",
              "for name in ('w_q', 'w_k', 'w_v', 'w_o'):\n"
              "    setattr(self, name, nn.Linear(d_model, d_model, bias=bias))",
              "self.w_q, self.w_k, self.w_v, self.w_o = (\n"
              "    nn.Linear(d_model, d_model, bias=bias) for _ in range(4))"])
    drop = p(["self.{dra} = nn.Dropout(dropout)", "self.{dra} = nn.Dropout(p=dropout)",
              "self.{dra} = dropout"])
    uses_module = "Dropout" in drop
    heads = p(["", "self.{dha} = d_model // n_heads\n"])
    init = ("super().__init__()\nif d_model % n_heads:\n    raise ValueError(f'd_model={{d_model}} "
            "must be divisible by n_heads={{n_heads}}')\nself.d_model, self.n_heads = d_model, "
            "n_heads\n" + heads + proj + "\n" + drop + "\nself.attn_weights: Tensor | None = None")
    inputs = (("q", "query", "{l}"), ("k", "key", "key.shape[1]"), ("v", "value", "value.size(1)"))
    lines = ["{b}, {l}, _ = query.shape"]
    for name, arg, length in inputs:
        length = p(["-1", length])
        explicit = "self.d_model // self.n_heads"
        d_head = explicit if length == "-1" else p(["-1", explicit])  # one -1 at most
        lines.append(f"{{{name}}} = self.w_{name}({arg}).{p(['view', 'reshape'])}({{b}}, {length}, "
                     f"self.n_heads, {d_head}){p(['.transpose(1, 2)', '.permute(0, 2, 1, 3)'])}")
    inline = "\n".join(lines)
    split = p([inline,
               "{q} = split_heads(self.w_q(query), self.n_heads)\n"
               "{k} = split_heads(self.w_k(key), self.n_heads)\n"
               "{v} = split_heads(self.w_v(value), self.n_heads)",
               "{q}, {k}, {v} = (split_heads(f(t), self.n_heads) for f, t in "
               "((self.w_q, query), (self.w_k, key), (self.w_v, value)))",
               "{q}, {k}, {v} = [split_heads(proj(t), self.n_heads) for proj, t in "
               "zip((self.w_q, self.w_k, self.w_v), (query, key, value))]"])
    fix = p(["if mask is not None and mask.dim() == 3:\n    mask = mask.unsqueeze(1)",
             "if mask is not None and mask.ndim == 3:\n    mask = mask[:, None]",
             "if mask is not None and len(mask.shape) == 3:\n    mask = mask.unsqueeze(-3)",
             "if mask is not None:\n    mask = mask.unsqueeze(1) if mask.dim() == 3 else mask",
             "if mask is not None:\n    if mask.dim() == 3:\n        mask = mask.unsqueeze(1)"],
            ["pass"])
    own = (f"{{sc}} = {p(['{q} @ {k}.transpose(-2, -1)', 'torch.matmul({q}, {k}.mT)'])} "
           f"{p(['/ {q}.shape[-1] ** 0.5', '/ math.sqrt({q}.size(-1))', '* {q}.size(-1) ** -0.5'])}\n"
           "if mask is not None:\n    "
           f"{p(['{sc} = {sc}.masked_fill(~mask, -1e30)', '{sc}.masked_fill_(mask == 0, -torch.inf)'])}\n"
           f"{{w}} = {p(['torch.softmax({sc}, dim=-1)', '{sc}.softmax(-1)', 'F.softmax({sc}, dim=-1)'])}"
           f"{p(['.nan_to_num(0.0)', ''])}\n{{o}} = {p(['{w} @ {v}', 'torch.matmul({w}, {v})'])}")
    call = p(["{o}, {w} = scaled_dot_product_attention({q}, {k}, {v}, mask)",
              "{o}, {w} = scaled_dot_product_attention({q}, {k}, {v}, mask=mask)", own])
    keep = p(["self.attn_weights = {w}.detach()", "self.attn_weights = {w}.detach().clone()"])
    dropout = (p(["if self.training and self.{dra}.p > 0:\n    {o} = self.{dra}({w}) @ {v}",
                  "{o} = self.{dra}({w}) @ {v}"]) if uses_module else
               "if self.training and self.{dra} > 0:\n"
               "    {o} = torch.nn.functional.dropout({w}, self.{dra}) @ {v}")
    ret = p(["return self.w_o(merge_heads({o}))", "{o} = merge_heads({o})\nreturn self.w_o({o})",
             "{o} = {o}.transpose(1, 2).reshape({o}.shape[0], -1, self.d_model)\nreturn self.w_o({o})"],
            ["return merge_heads({o})"])
    check = ("if mask is not None and mask.dtype != torch.bool:\n    raise TypeError("
             "'mask must be a bool tensor (True = may attend)')\n")
    forward = f"{p([check, ''])}{split}\n{fix}\n{call}\n{keep}\n{dropout}\n{ret}".replace("\npass\n", "\n")
    source = ("class MultiHeadAttention(nn.Module):\n"
              "    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, "
              "bias: bool = True):\n" + _indent(init, 8) + "\n\n"
              "    def forward(self, query: Tensor, key: Tensor, value: Tensor, "
              "mask: Tensor | None = None) -> Tensor:\n" + _indent(forward, 8))
    return "", source


EXERCISES = {
    "01_attention": [softmax, attention_scores, causal_mask, padding_mask,
                     scaled_dot_product_attention],
    "02_multi_head_attention": [split_heads, merge_heads, multi_head_attention],
}
IMPORTS = {
    "01_attention": ["import math", "import torch", "from torch import Tensor"],
    "02_multi_head_attention": ["import math", "import torch", "import torch.nn.functional as F",
                                "from torch import Tensor, nn",
                                "from transformer_course.attention import scaled_dot_product_attention"],
}


# --------------------------------------------------------------------------- students


def _indent(text: str, spaces: int) -> str:
    return "\n".join(" " * spaces + line if line else line for line in text.split("\n"))


@dataclass
class Style:
    """How one student writes: names, comments, layout. Never changes what code does."""

    seed: str

    def __post_init__(self):
        rng = random.Random(self.seed)
        self.rng = rng
        self.names = {role: rng.choice(options) for role, options in NAMES.items()}
        self.indent = rng.choice([4, 4, 4, 2])
        self.compact = rng.random() < 0.3
        self.quote = rng.choice(["'", '"'])
        self.comments = rng.random() < 0.6
        self.annotated = rng.random() < 0.7
        self.docstrings = rng.choice(["none", "own", "own"])
        self.cells = rng.random() < 0.5

    def render(self, head: str, body: str, name: str) -> str:
        code = body.format(**self.names)
        lines = []
        for line in code.split("\n"):
            if self.comments and line.strip() and self.rng.random() < 0.25:
                pad = line[:len(line) - len(line.lstrip())]
                lines.append(pad + self.rng.choice(COMMENTS))
            lines.append(line)
        code = "\n".join(lines)
        if head:
            if not self.annotated:
                head = re.sub(r":\s*(Tensor \| None|Tensor|int|float|bool)(?=[,)=\s])", "", head)
                head = re.sub(r"\)\s*->[^:]+:$", "):", head)
            doc = {"none": "", "own": f'"""{self.rng.choice(["My", "Compute the", "Returns the"])} '
                                      f'{name.replace("_", " ")}."""\n'}[self.docstrings]
            code = head + "\n" + _indent(doc + code, 4)
        return self.layout(code)

    def layout(self, code: str) -> str:
        if self.compact:
            code = re.sub(r" ([@/*]|//) (?=[\w(])", r"\1", code)
        code = code.replace("'", self.quote).replace('"""', "'''" if self.quote == "'" else '"""')
        if self.indent != 4:
            code = re.sub(r"^((?:    )+)", lambda m: " " * (len(m.group(1)) // 4 * self.indent),
                          code, flags=re.M)
        return code


@dataclass
class Student:
    name: str
    answers: dict[str, str]  # exercise -> seed of its structure
    style: Style
    notebook: bool
    copied_from: str | None = None
    order: list[int] = field(default_factory=list)

    def source(self, chapter: str) -> dict[str, str]:
        """``{exercise: code}`` in this student's style."""
        found = {}
        for make in EXERCISES[chapter]:
            pick = Pick(self.answers[make.__name__])
            head, body = make(pick)
            first = re.match(r"def \w+\(\s*(\w+)", head)
            if first and first.group(1) != "seq_len" and pick.rng.random() < 0.3:
                body = pick.rng.choice(HABITS).replace("{first}", first.group(1)) + "\n" + body
            name = "MultiHeadAttention" if make is multi_head_attention else make.__name__
            found[name] = self.style.render(head, body, name)
        return found


def _notebook(chapter: str, answers: dict[str, str]) -> str:
    nb = json.loads((REPO / "notebooks" / f"{chapter}.ipynb").read_text())
    for cell in nb["cells"]:
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        match = re.match(r"(?:def|class) (\w+)", source)
        if cell["cell_type"] == "code" and match and match.group(1) in answers:
            cell["source"] = answers[match.group(1)]
    return json.dumps(nb, indent=1)


def _script(chapter: str, student: Student, answers: dict[str, str]) -> str:
    order = list(answers)
    if student.copied_from:  # a copier moves the functions around
        student.style.rng.shuffle(order)
    parts = ["\n".join(IMPORTS[chapter])] + [answers[name] for name in order]
    joiner = "\n\n# %%\n" if student.style.cells else "\n\n\n"
    return student.style.layout(joiner.join(parts[:1])) + joiner + joiner.join(parts[1:]) + "\n"


@dataclass
class Class:
    students: list[Student]
    copied: set[frozenset[str]]  # pairs of students, one of whom copied (directly or not)


def make_class(n_students: int = 30, n_copiers: int = 5, seed: int = 0) -> Class:
    """Students with independent answers, then copiers. The first copier copies a
    copier (so three students share code), the second rewrites one exercise itself."""
    rng = random.Random(seed)
    names = [f"{FIRST[i % len(FIRST)]}_{i:03d}" for i in range(n_students)]
    exercises = [make.__name__ for chapter in CHAPTERS for make in EXERCISES[chapter]]
    students = [Student(name, {e: f"{seed}-{name}-{e}" for e in exercises},
                        Style(f"{seed}-{name}-style"), rng.random() < 0.35)
                for name in names]
    copiers = rng.sample(range(n_students), n_copiers)
    honest = [i for i in range(n_students) if i not in copiers]
    groups: dict[str, set[str]] = {}
    for number, index in enumerate(copiers):
        source = students[copiers[0]] if number == 1 else students[rng.choice(honest)]
        copier = students[index]
        copier.answers = dict(source.answers)
        if number == 2:
            mine = rng.choice([make.__name__ for make in EXERCISES[CHAPTERS[0]]])
            copier.answers[mine] = f"{seed}-{copier.name}-{mine}"
        copier.copied_from = source.name
        group = groups.get(source.name, {source.name}) | {copier.name}
        for member in group:
            groups[member] = group
    copied = {frozenset(p) for g in groups.values() for p in combinations(sorted(g), 2)}
    return Class(students, copied)


def write_class(cls: Class, root: Path, chapters: tuple[str, ...] = CHAPTERS) -> None:
    """``root/<student>/<chapter>.py`` or ``.ipynb``."""
    for student in cls.students:
        folder = Path(root) / student.name
        folder.mkdir(parents=True, exist_ok=True)
        for chapter in chapters:
            answers = student.source(chapter)
            if student.notebook:
                (folder / f"{chapter}.ipynb").write_text(_notebook(chapter, answers))
            else:
                (folder / f"{chapter}.py").write_text(_script(chapter, student, answers))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--copiers", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    made = make_class(args.students, args.copiers, args.seed)
    write_class(made, args.out)
    print(f"wrote {len(made.students)} students to {args.out}; copied pairs:",
          sorted(tuple(sorted(p)) for p in made.copied))
