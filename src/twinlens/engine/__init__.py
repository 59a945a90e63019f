"""The fusion engine: encoders, fusions, heads, training, the automatic recipe, bundles and
predictors. Most of it needs torch; only the worker, the CLI's training commands and a
plugin's own training code import it. The API and services never do (see
docs/architecture.md for the layer rules the suite enforces).
"""
