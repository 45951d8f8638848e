# ruff: noqa
# attacked: softmax
# message: shape
def softmax(x, dim=-1):
    return x.sum(dim=dim)
