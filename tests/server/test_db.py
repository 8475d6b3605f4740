"""The database layer: migrations match the models, SQLite runs in WAL mode, IDs."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from kohakuriver_lab.ids import SnowflakeGenerator, id_timestamp
from kohakuriver_lab.server.db.engine import make_engine, make_sessionmaker, upgrade_schema
from kohakuriver_lab.server.db.orm import Base, Task

both_databases = pytest.mark.parametrize("db_backend", ["sqlite", "postgres"], indirect=True)


@both_databases
def test_migrations_produce_exactly_the_models(host_db_url: str) -> None:
    engine = make_engine(host_db_url)
    upgrade_schema(engine)
    upgrade_schema(engine)  # idempotent
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    assert {"tasks", "task_events", "nodes", "runner_tokens", "alembic_version"} <= set(
        inspect(engine).get_table_names()
    )
    engine.dispose()


@both_databases
def test_task_round_trip_keeps_64_bit_ids_and_json(host_db_url: str) -> None:
    engine = make_engine(host_db_url)
    upgrade_schema(engine)
    db = make_sessionmaker(engine)
    big = 2**62 + 12345
    with db() as session:
        session.add(
            Task(
                task_id=big,
                owner="u",
                status="pending",
                command=["echo", "é"],
                env={"A": "1"},
                req_gpus=[0, 3],
                assigned_cores=[],
                assigned_gpus=[],
                submitted_at=1.0,
            )
        )
        session.commit()
    with db() as session:
        task = session.get(Task, big)
        assert task is not None
        assert (task.command, task.env, task.req_gpus) == (["echo", "é"], {"A": "1"}, [0, 3])
    engine.dispose()


def test_sqlite_uses_wal(host_db_url: str) -> None:
    engine = make_engine(host_db_url)
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    engine.dispose()


def test_snowflakes_increase_and_carry_time() -> None:
    gen = SnowflakeGenerator(worker_id=3)
    ids = [gen.next_id() for _ in range(10_000)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(0 < i < 2**63 for i in ids)
    import time

    assert abs(id_timestamp(ids[-1]) - time.time()) < 5
