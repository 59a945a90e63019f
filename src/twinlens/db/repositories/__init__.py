"""Queries live here; services compose them and never write SQL themselves."""

from twinlens.db.repositories.audit import AuditRepository
from twinlens.db.repositories.jobs import JobRepository
from twinlens.db.repositories.models import ModelRepository
from twinlens.db.repositories.pagination import KeysetPage, keyset_page
from twinlens.db.repositories.tenants import TenantRepository
from twinlens.db.repositories.training import TrainingRunRepository
from twinlens.db.repositories.webhooks import WebhookRepository

__all__ = [
    "AuditRepository",
    "JobRepository",
    "KeysetPage",
    "ModelRepository",
    "TenantRepository",
    "TrainingRunRepository",
    "WebhookRepository",
    "keyset_page",
]
