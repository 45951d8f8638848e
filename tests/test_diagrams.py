"""The chapters' block diagrams draw, with their boxes where the text says they are."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest
from matplotlib.patches import FancyBboxPatch

from transformer_course.diagrams import draw_multi_head, draw_norm_placement, draw_qkv_flow


def _boxes(ax) -> dict[str, tuple[float, float]]:
    """Centre of every named box on ``ax``."""
    centres = {}
    for patch in ax.patches:
        if isinstance(patch, FancyBboxPatch):
            centres[patch.get_gid()] = (patch.get_x() + patch.get_width() / 2,
                                        patch.get_y() + patch.get_height() / 2)
    return centres


def _arrows(ax) -> int:
    return sum(1 for child in ax.texts if getattr(child, "arrow_patch", None) is not None)


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def test_qkv_flow_goes_from_x_through_scores_and_softmax_to_the_output():
    ax = draw_qkv_flow()
    box = _boxes(ax)
    assert set(box) == {"X", "W_Q", "W_K", "W_V", "Q", "K", "V", "scores", "softmax", "output"}
    order = ["X", "W_Q", "Q", "scores", "softmax", "output"]
    assert [box[name][0] for name in order] == sorted(box[name][0] for name in order)
    assert _arrows(ax) == 3 + 3 + 2 + 1 + 2  # X->W, W->tensor, Q,K->scores, softmax, weights,V->out
    ax.figure.canvas.draw()


@pytest.mark.parametrize("n_heads", [1, 4])
def test_multi_head_has_one_branch_per_head_joined_by_concat_then_w_o(n_heads):
    ax = draw_multi_head(n_heads)
    box = _boxes(ax)
    assert {f"head {h}" for h in range(1, n_heads + 1)} <= set(box)
    assert "head 0" not in box and f"head {n_heads + 1}" not in box
    assert box["X"][0] < box["head 1"][0] < box["concat"][0] < box["W_O"][0] < box["output"][0]
    assert _arrows(ax) == 3 * n_heads + 2
    ax.figure.canvas.draw()


def test_multi_head_needs_a_head():
    with pytest.raises(ValueError):
        draw_multi_head(0)


def test_post_norm_normalizes_after_the_sum_and_pre_norm_before_the_sublayer():
    post, pre = draw_norm_placement()
    post_box, pre_box = _boxes(post), _boxes(pre)
    height = {name: y for name, (_, y) in post_box.items()}
    assert height["x"] < height["sublayer"] < height["+"] < height["LayerNorm"] < height["out"]
    height = {name: y for name, (_, y) in pre_box.items()}
    assert height["x"] < height["LayerNorm"] < height["sublayer"] < height["+"] < height["out"]
    assert _arrows(post) == _arrows(pre) == 5  # four steps up and the residual
    post.figure.canvas.draw()
