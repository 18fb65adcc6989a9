"""Quality signals, review flags and decisions, previews per job; review rules per tenant

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 21:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("review_rules", sa.JSON(), nullable=True))
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("measure_s", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("quality", sa.JSON(), nullable=True))
        batch_op.add_column(
            sa.Column("flagged", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("flags", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("review_reasons", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("review_decision", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("review_note", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("redo_of", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("before_preview_key", sa.String(length=1024), nullable=True))
        batch_op.add_column(sa.Column("after_preview_key", sa.String(length=1024), nullable=True))
        batch_op.create_foreign_key(
            "fk_jobs_redo_of", "jobs", ["redo_of"], ["id"], ondelete="SET NULL"
        )
        batch_op.create_index("ix_jobs_redo_of", ["redo_of"])
        batch_op.create_index("ix_jobs_batch_flagged", ["batch_id", "flagged", "created_at", "id"])


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_batch_flagged")
        batch_op.drop_index("ix_jobs_redo_of")
        batch_op.drop_constraint("fk_jobs_redo_of", type_="foreignkey")
        for column in (
            "after_preview_key",
            "before_preview_key",
            "redo_of",
            "reviewed_at",
            "review_note",
            "review_decision",
            "review_reasons",
            "flags",
            "flagged",
            "quality",
            "measure_s",
        ):
            batch_op.drop_column(column)
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.drop_column("review_rules")
