"""TwinLens: photo or scan + text -> a decision a person can act on."""

__version__ = "0.1.0"
