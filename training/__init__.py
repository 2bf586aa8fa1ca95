"""Bind new encoders to a frozen image/text hub (the ImageBind recipe), and evaluate them.

``train.py`` is the entry point; ``data.py`` is the contract every dataset adapter follows.
The library (``imagebind_ros``) never imports this package.
"""
