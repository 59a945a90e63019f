"""the web console (issue 18: sessions): console sessions and one-time login links, stored
as hashes of their tokens, and the reviewers' actions that undo walks back

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'console_sessions',
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('tenant_id', sa.Uuid(), nullable=False),
        sa.Column('api_key_id', sa.Uuid(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['api_key_id'], ['api_keys.id'], name=op.f('fk_console_sessions_api_key_id_api_keys'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_console_sessions_tenant_id_tenants'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_console_sessions')),
        sa.UniqueConstraint('token_hash', name=op.f('uq_console_sessions_token_hash')),
    )
    op.create_index(op.f('ix_console_sessions_api_key_id'), 'console_sessions', ['api_key_id'], unique=False)
    op.create_index(op.f('ix_console_sessions_tenant_id'), 'console_sessions', ['tenant_id'], unique=False)
    op.create_table(
        'console_login_links',
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('api_key_id', sa.Uuid(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['api_key_id'], ['api_keys.id'], name=op.f('fk_console_login_links_api_key_id_api_keys'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_console_login_links')),
        sa.UniqueConstraint('token_hash', name=op.f('uq_console_login_links_token_hash')),
    )
    op.create_index(op.f('ix_console_login_links_api_key_id'), 'console_login_links', ['api_key_id'], unique=False)
    op.create_table(
        'console_review_actions',
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('session_id', sa.Uuid(), nullable=False),
        sa.Column('tenant_id', sa.Uuid(), nullable=False),
        sa.Column('job_id', sa.Uuid(), nullable=False),
        sa.Column('action', sa.String(length=16), nullable=False),
        sa.Column('feedback_id', sa.Uuid(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('undone_at', sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("action IN ('accept', 'correct', 'reject', 'skip')", name=op.f('ck_console_review_actions_action')),
        sa.ForeignKeyConstraint(['feedback_id'], ['feedback.id'], name=op.f('fk_console_review_actions_feedback_id_feedback'), ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_console_review_actions_job_id_jobs'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['session_id'], ['console_sessions.id'], name=op.f('fk_console_review_actions_session_id_console_sessions'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_console_review_actions_tenant_id_tenants'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_console_review_actions')),
    )
    op.create_index(op.f('ix_console_review_actions_feedback_id'), 'console_review_actions', ['feedback_id'], unique=False)
    op.create_index(op.f('ix_console_review_actions_job_id'), 'console_review_actions', ['job_id'], unique=False)
    op.create_index('ix_console_review_actions_session_created', 'console_review_actions', ['session_id', 'created_at'], unique=False)
    op.create_index(op.f('ix_console_review_actions_tenant_id'), 'console_review_actions', ['tenant_id'], unique=False)


def downgrade() -> None:
    op.drop_table('console_review_actions')
    op.drop_table('console_login_links')
    op.drop_table('console_sessions')
