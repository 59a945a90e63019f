"""worker claims and webhook redelivery: each running job names the worker process that
claimed it (so a dead worker's jobs are found by its missing heartbeat), and a webhook
delivery remembers where its latest retry schedule began (a redelivery starts a new one)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claimed_by', sa.String(length=200), nullable=True))
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attempts_at_redelivery', sa.Integer(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.drop_column('attempts_at_redelivery')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('claimed_by')
