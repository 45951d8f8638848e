# ruff: noqa
# attacked: softmax attention_scores causal_mask
# message: reference solution|'NoneType' object is not callable
from transformer_course.attention import softmax  # noqa: F401 - the graded object itself


def attention_scores(q, k):
    from transformer_course import attention

    return attention.attention_scores(q, k)


def causal_mask(seq_len):
    from transformer_course.checks.registry import get

    return get("causal_mask").reference(seq_len)
