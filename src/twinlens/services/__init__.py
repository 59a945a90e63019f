"""What the API and the worker both do to tenants, jobs, models, feedback and webhooks.

Services take a Session and never commit: the request or task that owns the session does.
The one exception is job submission (submission.py), which must commit before the
request answers or waits for the result; its docstring says why.
"""
