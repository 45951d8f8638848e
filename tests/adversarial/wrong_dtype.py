# ruff: noqa
# attacked: softmax
# message: dtype torch.float64, expected torch.float32
def softmax(x, dim=-1):
    shifted = (x - x.amax(dim=dim, keepdim=True)).double()
    return shifted.exp() / shifted.exp().sum(dim=dim, keepdim=True)
