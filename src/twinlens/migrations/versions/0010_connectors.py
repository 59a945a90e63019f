"""helpdesk connectors (issue 17: Zendesk, Freshdesk)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01

Three tables: `connectors` (a tenant's helpdesk, its credentials sealed), `connector_tickets`
(one row per ticket and triggering comment: the dedupe key and the ticket's state) and
`connector_events` (every intake and call made for a ticket).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

STATUSES = "status IN ('received', 'fetching', 'submitted', 'writing', 'written', 'duplicate', 'failed', 'skipped')"


def upgrade() -> None:
    op.create_table('connectors',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=50), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('base_url', sa.Text(), nullable=False),
    sa.Column('plugin', sa.String(length=100), nullable=False),
    sa.Column('credentials_sealed', sa.Text(), nullable=False),
    sa.Column('options', sa.JSON(), nullable=False),
    sa.Column('write_back', sa.Boolean(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_connectors_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_connectors')),
    sa.UniqueConstraint('tenant_id', 'name', name='uq_connectors_tenant_name')
    )
    op.create_index(op.f('ix_connectors_tenant_id'), 'connectors', ['tenant_id'], unique=False)
    op.create_table('connector_tickets',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('connector_id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('ticket_id', sa.String(length=100), nullable=False),
    sa.Column('trigger_id', sa.String(length=100), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Uuid(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('written_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint(STATUSES, name=op.f('ck_connector_tickets_status')),
    sa.ForeignKeyConstraint(['connector_id'], ['connectors.id'], name=op.f('fk_connector_tickets_connector_id_connectors'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_connector_tickets_job_id_jobs'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_connector_tickets_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_connector_tickets')),
    sa.UniqueConstraint('connector_id', 'ticket_id', 'trigger_id', name='uq_connector_tickets_trigger')
    )
    op.create_index(op.f('ix_connector_tickets_connector_id'), 'connector_tickets', ['connector_id'], unique=False)
    op.create_index(op.f('ix_connector_tickets_job_id'), 'connector_tickets', ['job_id'], unique=False)
    op.create_index('ix_connector_tickets_status_updated', 'connector_tickets', ['status', 'updated_at'], unique=False)
    op.create_table('connector_events',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('connector_id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('ticket_row_id', sa.Uuid(), nullable=True),
    sa.Column('ticket_id', sa.String(length=100), nullable=True),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('method', sa.String(length=10), nullable=True),
    sa.Column('url', sa.Text(), nullable=True),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('attempt', sa.Integer(), nullable=True),
    sa.Column('duration_ms', sa.Float(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['connector_id'], ['connectors.id'], name=op.f('fk_connector_events_connector_id_connectors'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_connector_events_tenant_id_tenants'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['ticket_row_id'], ['connector_tickets.id'], name=op.f('fk_connector_events_ticket_row_id_connector_tickets'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_connector_events'))
    )
    op.create_index('ix_connector_events_page', 'connector_events', ['connector_id', 'created_at', 'id'], unique=False)
    op.create_index(op.f('ix_connector_events_ticket_row_id'), 'connector_events', ['ticket_row_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_connector_events_ticket_row_id'), table_name='connector_events')
    op.drop_index('ix_connector_events_page', table_name='connector_events')
    op.drop_table('connector_events')
    op.drop_index('ix_connector_tickets_status_updated', table_name='connector_tickets')
    op.drop_index(op.f('ix_connector_tickets_job_id'), table_name='connector_tickets')
    op.drop_index(op.f('ix_connector_tickets_connector_id'), table_name='connector_tickets')
    op.drop_table('connector_tickets')
    op.drop_index(op.f('ix_connectors_tenant_id'), table_name='connectors')
    op.drop_table('connectors')
