"""Contextual understanding: one word's vectors before and after a pretrained encoder.

An embedding table gives a word one vector wherever it stands; self-attention rewrites
each token's vector from the whole sentence. :func:`word_vectors` takes the vectors of
one word in several sentences at both ends of chapter 4's MiniLM, for
:func:`transformer_course.why.cosine_similarity_matrix` to compare.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from transformer_course.experiments.threads import torch_threads


@torch.no_grad()
def word_vectors(
    model: nn.Module, sentences: list[str], word: str, num_threads: int | None = 1
) -> tuple[Tensor, Tensor]:
    """The vectors of ``word`` in each sentence, before and after the encoder layers.

    ``model`` is chapter 4's MiniLM (``transformer_course.pretrained.minilm``). "Before"
    is what enters the first encoder layer (word, position and token-type embeddings,
    normalised): the same word differs there only by its position. "After" is the last
    layer's output, which has mixed in the rest of the sentence through attention.

    Args:
        model: a loaded MiniLM.
        sentences: ``B`` sentences that each contain ``word``.
        word: a word the tokenizer keeps as one word piece (lower case), e.g. "bank".
        num_threads: torch threads for the forward pass
            (:func:`~transformer_course.experiments.threads.torch_threads`).

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
