"""Tables for the web console (issue 18): server-side sessions, one-time login links and
the reviewer's actions (what `u` undoes).

Only a SHA-256 of each session token and login link is stored: the tokens are 256 random
bits, so as with API keys a slow hash adds nothing, and a copy of the table logs nobody in.
No row here holds a job's inputs (ids and action names only), so retention and erasure
need nothing beyond the cascades from jobs, feedback, keys and tenants.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from twinlens.db.base import Base, UTCDateTime, new_id, utcnow

REVIEW_ACTIONS = ("accept", "correct", "reject", "skip")


class ConsoleSession(Base):
    """A browser logged in with an API key; it acts as that key until it ends or expires."""

    __tablename__ = "console_sessions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    # Revoking or deleting the key ends its sessions (checked on every request).
    api_key_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ConsoleLoginLink(Base):
    """A one-time link that opens a session for a key (what `twinlens demo` prints)."""

    __tablename__ = "console_login_links"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    api_key_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ConsoleReviewAction(Base):
    """One keystroke's worth of review in a session: accept/correct/reject wrote a feedback
    row, skip wrote none. Undo withdraws the session's latest action (and its feedback)."""

    __tablename__ = "console_review_actions"
    __table_args__ = (
        Index("ix_console_review_actions_session_created", "session_id", "created_at"),
        CheckConstraint("action IN ('accept', 'correct', 'reject', 'skip')", name="action"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    session_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("console_sessions.id", ondelete="CASCADE"))
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    action: Mapped[str] = mapped_column(String(16))
    # SET NULL: a feedback row erased with its subject leaves the action as history.
    feedback_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("feedback.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    undone_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
