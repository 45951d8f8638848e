# ruff: noqa
# attacked: softmax
# message: took too long|CPU time
def softmax(x, dim=-1):
    while True:
        pass
