"""notebook jobs: parameters, progress, results, output path

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tasks", sa.Column("parameters", sa.JSON(), nullable=True))
    op.add_column("tasks", sa.Column("progress", sa.JSON(), nullable=True))
    op.add_column("tasks", sa.Column("results", sa.JSON(), nullable=True))
    op.add_column("tasks", sa.Column("output_path", sa.String(length=1024), nullable=True))


def downgrade() -> None:
    op.drop_column("tasks", "output_path")
    op.drop_column("tasks", "results")
    op.drop_column("tasks", "progress")
    op.drop_column("tasks", "parameters")
