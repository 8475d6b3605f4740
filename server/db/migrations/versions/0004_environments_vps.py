"""environments, their versions; task environment, mounts and VPS SSH columns

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tasks", sa.Column("environment", sa.String(length=200), nullable=True))
    op.add_column("tasks", sa.Column("mounts", sa.JSON(), nullable=True))
    op.add_column("tasks", sa.Column("ssh_public_key", sa.Text(), nullable=True))
    op.add_column("tasks", sa.Column("ssh_port", sa.Integer(), nullable=True))
    op.create_table(
        "environments",
        sa.Column("name", sa.String(length=63), primary_key=True),
        sa.Column("node", sa.String(length=63), nullable=True),
        sa.Column("base_image", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
    )
    op.create_table(
        "environment_versions",
        sa.Column("name", sa.String(length=63), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("tag", sa.String(length=128), nullable=False),
        sa.Column("image_id", sa.String(length=100), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
    )
    op.create_index(
        "ix_environment_versions_tag", "environment_versions", ["name", "tag"], unique=True
    )


def downgrade() -> None:
    op.drop_index("ix_environment_versions_tag", table_name="environment_versions")
    op.drop_table("environment_versions")
    op.drop_table("environments")
    op.drop_column("tasks", "ssh_port")
    op.drop_column("tasks", "ssh_public_key")
    op.drop_column("tasks", "mounts")
    op.drop_column("tasks", "environment")
