"""A secret of each tenant's own for its report links, so they can be ended apart from webhooks

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08 10:00:00.000000
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("link_secret", sa.String(length=128), nullable=True))
    # Each existing tenant gets a random secret of its own (links made before this no longer
    # verify anyway: they named no API key).
    tenants = sa.table("tenants", sa.column("id", sa.String), sa.column("link_secret", sa.String))
    connection = op.get_bind()
    for (tenant_id,) in connection.execute(sa.select(tenants.c.id)).all():
        connection.execute(
            tenants.update()
            .where(tenants.c.id == tenant_id)
            .values(link_secret=secrets.token_urlsafe(32))
        )
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.alter_column("link_secret", existing_type=sa.String(length=128), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.drop_column("link_secret")
