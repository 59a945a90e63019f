"""roles and sealed webhook secrets: platform-admin keys; tenants' signing secrets
encrypted at rest (Fernet) with a previous secret kept through a rotation's overlap

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23

The migration cannot encrypt the clear secrets of existing tenants (the key lives in the
service's settings, not the database): it keeps them as `legacy_webhook_secret`, and the
service seals each one (and empties the column) at `twinlens serve` / `twinlens db upgrade`
or the first time the secret is needed.
"""

from __future__ import annotations

import base64
import secrets

import sqlalchemy as sa
from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('is_platform_admin', sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table('tenants', schema=None) as batch_op:
        batch_op.alter_column('webhook_secret', new_column_name='legacy_webhook_secret', existing_type=sa.String(length=100),
                              nullable=True)
        batch_op.add_column(sa.Column('webhook_secret_sealed', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('previous_webhook_secret_sealed', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('previous_webhook_secret_expires_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    # The sealed secrets cannot be decrypted here: tenants without a clear secret get a new
    # one (their receivers must be given it again).
    tenants = sa.table('tenants', sa.column('id', sa.Uuid()), sa.column('legacy_webhook_secret', sa.String(100)))
    connection = op.get_bind()
    for (tenant_id,) in connection.execute(sa.select(tenants.c.id).where(tenants.c.legacy_webhook_secret.is_(None))).all():
        fresh = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        connection.execute(tenants.update().where(tenants.c.id == tenant_id).values(legacy_webhook_secret=fresh))
    with op.batch_alter_table('tenants', schema=None) as batch_op:
        batch_op.drop_column('previous_webhook_secret_expires_at')
        batch_op.drop_column('previous_webhook_secret_sealed')
        batch_op.drop_column('webhook_secret_sealed')
        batch_op.alter_column('legacy_webhook_secret', new_column_name='webhook_secret', existing_type=sa.String(length=100),
                              nullable=False)
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_column('is_platform_admin')
