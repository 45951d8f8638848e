# ruff: noqa
# attacked: softmax
# message: not found
# note: exit code 3
# %%
import os
import sys


class Quitter:
    sys.exit("class bodies run at import")  # caught: costs only this statement


# %%
def softmax(x, dim=os._exit(3)):  # default arguments are evaluated at import
    return x
