"""job subject digest and audit paging: jobs name the person or customer they are about
(by a digest of the caller's `metadata.subject_ref`), so an erasure request finds all of
them; a tenant's audit events are read newest first, page by page

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24

Existing jobs get no digest: they were submitted before a subject could be named.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('subject_digest', sa.String(length=64), nullable=True))
        batch_op.create_index('ix_jobs_tenant_subject', ['tenant_id', 'subject_digest'], unique=False)
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index('ix_audit_events_tenant_page', ['tenant_id', 'created_at', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_events_tenant_page')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_tenant_subject')
        batch_op.drop_column('subject_digest')
