# ruff: noqa
# attacked: softmax
# message: forbidden|torch.softmax
# A correct softmax as exp(log_softmax).
def softmax(x, dim=-1):
    return x.log_softmax(dim).exp()
