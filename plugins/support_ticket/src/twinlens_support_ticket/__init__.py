"""TwinLens support-ticket plugin: photo + ticket text (+ text read from the photo) ->
fault, severity, next step and team. Importing this package loads neither torch nor OCR."""

__version__ = "0.1.0"
