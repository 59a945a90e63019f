"""the learning loop (issue 14: holdouts, gate reports, shadow outputs, activation history, drift)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('holdouts',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('plugin', sa.String(length=100), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('data_path', sa.Text(), nullable=True),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('registered', 'corrections')", name=op.f('ck_holdouts_kind')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_holdouts_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_holdouts')),
    sa.UniqueConstraint('tenant_id', 'plugin', 'version', name='uq_holdouts_tenant_plugin_version')
    )
    op.create_table('gate_reports',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=True),
    sa.Column('plugin', sa.String(length=100), nullable=False),
    sa.Column('candidate_id', sa.Uuid(), nullable=False),
    sa.Column('champion_id', sa.Uuid(), nullable=True),
    sa.Column('holdout_id', sa.Uuid(), nullable=True),
    sa.Column('thresholds', sa.JSON(), nullable=False),
    sa.Column('checks', sa.JSON(), nullable=False),
    sa.Column('passed', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['candidate_id'], ['model_versions.id'], name=op.f('fk_gate_reports_candidate_id_model_versions'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['champion_id'], ['model_versions.id'], name=op.f('fk_gate_reports_champion_id_model_versions'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['holdout_id'], ['holdouts.id'], name=op.f('fk_gate_reports_holdout_id_holdouts'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_gate_reports_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_gate_reports'))
    )
    op.create_index('ix_gate_reports_candidate', 'gate_reports', ['candidate_id', 'created_at'], unique=False)
    op.create_table('model_aliases',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('scope', sa.String(length=40), nullable=False),
    sa.Column('plugin', sa.String(length=100), nullable=False),
    sa.Column('alias', sa.String(length=16), nullable=False),
    sa.Column('model_version_id', sa.Uuid(), nullable=False),
    sa.Column('shadow_share', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("alias IN ('champion', 'challenger')", name=op.f('ck_model_aliases_alias')),
    sa.ForeignKeyConstraint(['model_version_id'], ['model_versions.id'], name=op.f('fk_model_aliases_model_version_id_model_versions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_model_aliases')),
    sa.UniqueConstraint('scope', 'plugin', 'alias', name='uq_model_aliases_scope_plugin_alias')
    )
    op.create_table('model_evaluations',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('model_version_id', sa.Uuid(), nullable=False),
    sa.Column('holdout_id', sa.Uuid(), nullable=False),
    sa.Column('metrics', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['holdout_id'], ['holdouts.id'], name=op.f('fk_model_evaluations_holdout_id_holdouts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['model_version_id'], ['model_versions.id'], name=op.f('fk_model_evaluations_model_version_id_model_versions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_model_evaluations')),
    sa.UniqueConstraint('model_version_id', 'holdout_id', name='uq_model_evaluations_model_holdout')
    )
    op.create_index(op.f('ix_model_evaluations_holdout_id'), 'model_evaluations', ['holdout_id'], unique=False)
    op.create_table('holdout_jobs',
    sa.Column('holdout_id', sa.Uuid(), nullable=False),
    sa.Column('job_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['holdout_id'], ['holdouts.id'], name=op.f('fk_holdout_jobs_holdout_id_holdouts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_holdout_jobs_job_id_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('holdout_id', 'job_id', name=op.f('pk_holdout_jobs'))
    )
    op.create_index(op.f('ix_holdout_jobs_job_id'), 'holdout_jobs', ['job_id'], unique=False)
    op.create_table('model_activations',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('scope', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=True),
    sa.Column('plugin', sa.String(length=100), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('model_version_id', sa.Uuid(), nullable=False),
    sa.Column('previous_model_version_id', sa.Uuid(), nullable=True),
    sa.Column('forced', sa.Boolean(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('gate_report_id', sa.Uuid(), nullable=True),
    sa.Column('api_key_id', sa.Uuid(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("action IN ('activate', 'promote', 'rollback')", name=op.f('ck_model_activations_action')),
    sa.ForeignKeyConstraint(['api_key_id'], ['api_keys.id'], name=op.f('fk_model_activations_api_key_id_api_keys'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['gate_report_id'], ['gate_reports.id'], name=op.f('fk_model_activations_gate_report_id_gate_reports'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['model_version_id'], ['model_versions.id'], name=op.f('fk_model_activations_model_version_id_model_versions'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['previous_model_version_id'], ['model_versions.id'], name=op.f('fk_model_activations_previous_model_version_id_model_versions'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_model_activations_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_model_activations'))
    )
    op.create_index('ix_model_activations_scope', 'model_activations', ['scope', 'plugin', 'created_at'], unique=False)
    op.create_table('shadow_results',
    sa.Column('job_id', sa.Uuid(), nullable=False),
    sa.Column('model_version_id', sa.Uuid(), nullable=False),
    sa.Column('champion_version_id', sa.Uuid(), nullable=True),
    sa.Column('heads', sa.JSON(), nullable=False),
    sa.Column('decision', sa.JSON(), nullable=False),
    sa.Column('agreement', sa.JSON(), nullable=False),
    sa.Column('latency_ms', sa.Float(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['champion_version_id'], ['model_versions.id'], name=op.f('fk_shadow_results_champion_version_id_model_versions'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_shadow_results_job_id_jobs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['model_version_id'], ['model_versions.id'], name=op.f('fk_shadow_results_model_version_id_model_versions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id', 'model_version_id', name=op.f('pk_shadow_results'))
    )
    op.create_index('ix_shadow_results_model', 'shadow_results', ['model_version_id', 'created_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_shadow_results_model', table_name='shadow_results')
    op.drop_table('shadow_results')
    op.drop_index('ix_model_activations_scope', table_name='model_activations')
    op.drop_table('model_activations')
    op.drop_index(op.f('ix_holdout_jobs_job_id'), table_name='holdout_jobs')
    op.drop_table('holdout_jobs')
    op.drop_index(op.f('ix_model_evaluations_holdout_id'), table_name='model_evaluations')
    op.drop_table('model_evaluations')
    op.drop_table('model_aliases')
    op.drop_index('ix_gate_reports_candidate', table_name='gate_reports')
    op.drop_table('gate_reports')
    op.drop_table('holdouts')
