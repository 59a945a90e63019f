"""The REST API (FastAPI). Thin routes over services; never imports torch or the worker."""
