"""explanations stored with job results (issue 13: heatmaps, word weights)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('explain', sa.Boolean(), nullable=False, server_default=sa.false()))

    op.create_table('job_explanations',
    sa.Column('job_id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('model_version', sa.String(length=100), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('duration_ms', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_job_explanations_job_id_jobs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_job_explanations_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id', name=op.f('pk_job_explanations'))
    )
    with op.batch_alter_table('job_explanations', schema=None) as batch_op:
        batch_op.create_index('ix_job_explanations_tenant', ['tenant_id'], unique=False)

    op.create_table('explanation_heatmaps',
    sa.Column('job_id', sa.Uuid(), nullable=False),
    sa.Column('head', sa.String(length=100), nullable=False),
    sa.Column('png', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['job_explanations.job_id'], name=op.f('fk_explanation_heatmaps_job_id_job_explanations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id', 'head', name=op.f('pk_explanation_heatmaps'))
    )


def downgrade() -> None:
    op.drop_table('explanation_heatmaps')
    with op.batch_alter_table('job_explanations', schema=None) as batch_op:
        batch_op.drop_index('ix_job_explanations_tenant')
    op.drop_table('job_explanations')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('explain')
