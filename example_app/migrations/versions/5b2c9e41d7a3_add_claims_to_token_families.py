"""Add additional claims to token families

Revision ID: 5b2c9e41d7a3
Revises: d615e10e2fd7
Create Date: 2026-12-12 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '5b2c9e41d7a3'
down_revision = 'd615e10e2fd7'
branch_labels = None
depends_on = None


def upgrade():
    # Nullable, so existing sessions keep working: they have no additional claims.
    with op.batch_alter_table('refresh_token_family', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claims', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('refresh_token_family', schema=None) as batch_op:
        batch_op.drop_column('claims')
