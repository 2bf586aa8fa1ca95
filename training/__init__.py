"""Bind new encoders to a frozen image/text hub (the ImageBind recipe), and evaluate them.

``train.py`` is the entry point and ``eval.py`` evaluates checkpoints; ``data.py`` is the
contract every dataset adapter follows, ``datasets/`` holds the real-data adapters (one
module each) and ``augment.py`` the paper's augmentations. See docs/training.md.
The library (``imagebind_ros``) never imports this package.
"""
