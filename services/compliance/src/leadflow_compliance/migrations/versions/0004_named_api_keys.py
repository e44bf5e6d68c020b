"""named, scoped API keys hashed with scrypt; existing SHA-256 digests re-hashed

Revision ID: 0004_named_api_keys
Revises: 0003_state_dnc_lists
Create Date: 2026-12-01

Keys issued before this revision are known only by their SHA-256 digest. Each digest becomes the
row's lookup (its first 24 hex digits) and the input of an scrypt hash, so those keys keep working
and the full fast digest is no longer stored. They are named `key-<key id>` and may ingest and read,
as they could before. The parameters and encoding below are api_key_hashing's, written out here so
this revision keeps meaning what it meant when that module changes.
"""

import base64
import hashlib
import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_named_api_keys"
down_revision: str | None = "0003_state_dnc_lists"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_N, _R, _P = 2**14, 8, 1


def _rehash(sha256_hex: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(bytes.fromhex(sha256_hex), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    b64 = base64.urlsafe_b64encode
    return f"scrypt-sha256${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


# 0001 left the unique constraint on key_hash unnamed: PostgreSQL names it by this pattern, and
# SQLite's batch mode (which reflects the table) needs the same name given to drop it.
_NAMING = {"uq": "%(table_name)s_%(column_0_name)s_key"}


def upgrade() -> None:
    with op.batch_alter_table("compliance_api_keys", naming_convention=_NAMING) as batch:
        batch.add_column(sa.Column("name", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("lookup", sa.String(length=40), nullable=False, server_default=""))
        batch.add_column(
            sa.Column("scopes", sa.String(length=100), nullable=False, server_default="ingest,read")
        )
        batch.add_column(sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))
        batch.alter_column("key_hash", type_=sa.String(length=200), existing_nullable=False)
        batch.drop_constraint("compliance_api_keys_key_hash_key", type_="unique")
    keys = sa.table(
        "compliance_api_keys",
        sa.column("key_id", sa.String),
        sa.column("key_hash", sa.String),
        sa.column("name", sa.String),
        sa.column("lookup", sa.String),
    )
    conn = op.get_bind()
    for key_id, old in conn.execute(sa.select(keys.c.key_id, keys.c.key_hash)).all():
        conn.execute(
            keys.update()
            .where(keys.c.key_id == key_id)
            .values(name=f"key-{key_id}", lookup="sha256:" + old[:24], key_hash=_rehash(old))
        )
    with op.batch_alter_table("compliance_api_keys") as batch:
        batch.alter_column("name", existing_type=sa.String(length=100), nullable=False)
        batch.alter_column("scopes", existing_type=sa.String(length=100), server_default=None)
        batch.alter_column("lookup", existing_type=sa.String(length=40), server_default=None)
        batch.create_index("ix_compliance_api_keys_lookup", ["lookup"], unique=False)
        batch.create_index(
            "ux_compliance_api_keys_valid_name",
            ["tenant", "name"],
            unique=True,
            postgresql_where=sa.text("revoked_at IS NULL"),
            sqlite_where=sa.text("revoked_at IS NULL"),
        )


def downgrade() -> None:
    # The SHA-256 digests cannot be recovered from scrypt hashes: every key stops working.
    op.execute("DELETE FROM compliance_api_keys")
    with op.batch_alter_table("compliance_api_keys") as batch:
        batch.drop_index("ux_compliance_api_keys_valid_name")
        batch.drop_index("ix_compliance_api_keys_lookup")
        batch.drop_column("last_used_at")
        batch.drop_column("scopes")
        batch.drop_column("lookup")
        batch.drop_column("name")
        batch.alter_column("key_hash", type_=sa.String(length=64), existing_nullable=False)
        batch.create_unique_constraint("compliance_api_keys_key_hash_key", ["key_hash"])
