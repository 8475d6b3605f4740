"""The host's database: SQLAlchemy 2.0 models, engine set-up and Alembic migrations."""
