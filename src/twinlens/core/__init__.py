"""The fusion engine.

This package's ``__init__`` and its torch-free modules (``schema``, ``spec``, ``sample``,
``plugin``, ``registry``, ``errors``) are imported by the API, which must never load torch.
Modules that need torch (``model``, ``training``, ``predictor``...) are imported explicitly.
"""
