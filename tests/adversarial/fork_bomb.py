# ruff: noqa
# attacked: softmax attention_scores
# message: os.fork|subprocess.Popen|PermissionError
import multiprocessing
import os


def softmax(x, dim=-1):
    while True:
        os.fork()


def attention_scores(q, k):
    multiprocessing.Process(target=print).start()
