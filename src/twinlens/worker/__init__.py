"""Workers: the task code (tasks.py) and the embedded in-process worker (inprocess.py).

The Celery layer (a later step) only wraps the functions in tasks.py; the API never
imports this package.
"""
