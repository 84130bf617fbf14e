"""Chat threads, their participants, messages and read receipts (issue 5).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _thread_fk() -> sa.Column:
    return sa.Column(
        "thread_id",
        sa.String(64),
        sa.ForeignKey("chat_threads.id", ondelete="CASCADE"),
        primary_key=True,
    )


def upgrade() -> None:
    op.create_table(
        "chat_threads",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("topic", sa.String(256), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("deleted_at", sa.Float(), nullable=True),
        sa.Column("last_message_at", sa.Float(), nullable=True),
        sa.Column("last_sequence_id", sa.Integer(), nullable=False),
        sa.Column("last_message_id", sa.BigInteger(), nullable=False),
        sa.Column("repeatability_id", sa.String(128), nullable=True, unique=True),
    )
    op.create_table(
        "chat_participants",
        _thread_fk(),
        sa.Column("raw_id", sa.String(256), primary_key=True),
        sa.Column("display_name", sa.String(256), nullable=True),
        sa.Column("share_history_at", sa.Float(), nullable=True),
        sa.Column("added_at", sa.Float(), nullable=False),
    )
    op.create_table(
        "chat_messages",
        _thread_fk(),
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("sequence_id", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("sender_id", sa.String(256), nullable=True),
        sa.Column("sender_display_name", sa.String(256), nullable=True),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("metadata_json", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("edited_at", sa.Float(), nullable=True),
        sa.Column("deleted_at", sa.Float(), nullable=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_chat_messages_sequence_id", "chat_messages", ["sequence_id"])
    op.create_table(
        "chat_read_receipts",
        _thread_fk(),
        sa.Column("raw_id", sa.String(256), primary_key=True),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("read_at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("chat_read_receipts")
    op.drop_index("ix_chat_messages_sequence_id", table_name="chat_messages")
    op.drop_table("chat_messages")
    op.drop_table("chat_participants")
    op.drop_table("chat_threads")
