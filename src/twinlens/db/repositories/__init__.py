"""Queries live here; services compose them and never write SQL themselves."""

from twinlens.db.repositories.audit import AuditRepository
from twinlens.db.repositories.jobs import JobPage, JobRepository
from twinlens.db.repositories.models import ModelRepository
from twinlens.db.repositories.tenants import TenantRepository
from twinlens.db.repositories.training import TrainingRunPage, TrainingRunRepository
from twinlens.db.repositories.webhooks import WebhookRepository

__all__ = [
    "AuditRepository",
    "JobPage",
    "JobRepository",
    "ModelRepository",
    "TenantRepository",
    "TrainingRunPage",
    "TrainingRunRepository",
    "WebhookRepository",
]
