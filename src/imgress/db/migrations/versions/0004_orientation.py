"""Rotation found from the content of each image.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("detected_angle", sa.Integer, nullable=True))
        batch.add_column(sa.Column("orientation_confidence", sa.Float, nullable=True))
        batch.add_column(sa.Column("orientation_applied", sa.Boolean, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.drop_column("orientation_applied")
        batch.drop_column("orientation_confidence")
        batch.drop_column("detected_angle")
