"""What the API and the worker both do to tenants, jobs, models, feedback and webhooks.

Services take a Session and never commit: the request or task that owns the session does.
"""
