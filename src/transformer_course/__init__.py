"""Transformers from scratch: reference solutions and helpers for the course notebooks.

Each chapter's reference code lives in a module of its own (``attention``, ...);
``checks`` gives the in-notebook feedback, ``settings`` the quick/full switch.
"""

__version__ = "0.1.0"
