# ruff: noqa
# attacked: softmax
# message: softmax was not found in the submission
def soft_max(x, dim=-1):
    return x
