# ruff: noqa
# attacked: softmax attention_scores
# message: does not let submissions open|could not get source code|computed name
import inspect
import os

import transformer_course


def softmax(x, dim=-1):
    path = os.path.join(os.path.dirname(transformer_course.__file__), "attention.py")
    namespace = {}
    exec(open(path).read(), namespace)
    return namespace["softmax"](x, dim)


def attention_scores(q, k):
    import transformer_course.attention as ref

    namespace = {}
    exec(inspect.getsource(ref), namespace)
    return namespace["attention_scores"](q, k)
