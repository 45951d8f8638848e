"""The cross-attention diagram draws one line per (query, key) pair, weighted as given."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
import torch

from transformer_course.diagrams_seq2seq import draw_cross_attention


def test_one_line_per_query_and_key_darker_where_the_weight_is_larger():
    weights = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    ax = draw_cross_attention(list("abc"), ["<bos>", "x"], weights, query=1)
    lines = ax.get_lines()
    assert len(lines) == 2 * 3
    highlighted = [line.get_alpha() for line in lines[3:]]  # query 1's lines, key by key
    assert highlighted.index(max(highlighted)) == 2
    assert max(highlighted) > max(line.get_alpha() for line in lines[:3])
    plt.close("all")


def test_weights_of_the_wrong_shape_are_refused():
    with pytest.raises(ValueError, match="L_tgt, L_src"):
        draw_cross_attention(list("abc"), ["<bos>"], torch.ones(3, 1) / 3)
