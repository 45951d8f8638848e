"""Test-wide setup: every notebook and experiment runs in the quick setting, and keeps
passing implementations in a workspace folder of its own run.

The suite runs on pytest-xdist workers (see the Makefile). Each worker, and every kernel
it starts, uses one torch thread: the workers already fill the cores, and more threads
per worker would oversubscribe them and slow everything down.
"""

import os
import tempfile

import matplotlib
import torch

from transformer_course.settings import QUICK_ENV
from transformer_course.workspace import WORKSPACE_ENV

os.environ[QUICK_ENV] = "1"  # inherited by the kernels that the notebook tests start
# What the notebooks keep of passing checks goes to a folder of this run, not the repository.
os.environ[WORKSPACE_ENV] = tempfile.mkdtemp(prefix="course-workspace-")
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
matplotlib.use("Agg")  # this process only: kernels keep drawing figures inline
