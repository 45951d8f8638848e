"""Test-wide setup: every notebook and experiment runs in the quick setting.

The suite runs on pytest-xdist workers (see the Makefile). Each worker, and every kernel
it starts, uses one torch thread: the workers already fill the cores, and more threads
per worker would oversubscribe them and slow everything down.
"""

import os

import matplotlib
import torch

from transformer_course.settings import QUICK_ENV

os.environ[QUICK_ENV] = "1"  # inherited by the kernels that the notebook tests start
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
matplotlib.use("Agg")  # this process only: kernels keep drawing figures inline
