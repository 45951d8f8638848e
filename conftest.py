"""Test-wide setup: every notebook and experiment runs in the quick setting, with the
student workspace (``mine/``) off.

The suite runs on pytest-xdist workers (see the Makefile). Each worker, and every kernel
it starts, uses one torch thread: the workers already fill the cores, and more threads
per worker would oversubscribe them and slow everything down.
"""

import os

import matplotlib
import torch

from transformer_course.settings import QUICK_ENV
from transformer_course.workspace import WORKSPACE_ENV

os.environ[QUICK_ENV] = "1"  # inherited by the kernels that the notebook tests start
# No test reads or writes a student workspace by accident (a kernel of one test keeping a
# check that another test's notebook would then run); the tests of the workspace set their own.
os.environ[WORKSPACE_ENV] = "off"
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
matplotlib.use("Agg")  # this process only: kernels keep drawing figures inline
