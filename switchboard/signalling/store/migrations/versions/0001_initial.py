"""Identities, revocations, rooms and room participants (the tables of issue 3).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "identities",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("created_at", sa.Float(), nullable=False),
    )
    op.create_table(
        "revocations",
        sa.Column("user_id", sa.String(128), primary_key=True),
        sa.Column("revoked_at", sa.Float(), nullable=False),
    )
    op.create_table(
        "rooms",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("valid_from", sa.Float(), nullable=False),
        sa.Column("valid_until", sa.Float(), nullable=False),
        sa.Column("pstn_dial_out_enabled", sa.Boolean(), nullable=False),
        sa.Column("repeatability_id", sa.String(128), nullable=True, unique=True),
    )
    op.create_table(
        "room_participants",
        sa.Column(
            "room_id",
            sa.String(64),
            sa.ForeignKey("rooms.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("raw_id", sa.String(256), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("room_participants")
    op.drop_table("rooms")
    op.drop_table("revocations")
    op.drop_table("identities")
