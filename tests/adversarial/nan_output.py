# ruff: noqa
# attacked: softmax
# message: NaN at index
def softmax(x, dim=-1):
    return x * float("nan")
