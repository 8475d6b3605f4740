"""nodes.token_id: the runner token that owns a node name

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL for nodes registered before names had owners: the next token to say hello as
    # the name claims it.
    with op.batch_alter_table("nodes") as batch:
        batch.add_column(sa.Column("token_id", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("token_id")
