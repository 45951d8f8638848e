"""Test-wide setup: every notebook and experiment runs in the quick setting."""

import os

import matplotlib

from transformer_course.settings import QUICK_ENV

os.environ[QUICK_ENV] = "1"  # inherited by the kernels nbval and nbclient start
os.environ.setdefault("MPLBACKEND", "Agg")
matplotlib.use("Agg")
