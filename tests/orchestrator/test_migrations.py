"""The job database's schema through Alembic, on SQLite and (with VTON_TEST_POSTGRES_URL) PostgreSQL: an empty
database upgrades to head, the migrations build exactly the tables the models describe, and a database made
before the schema had migrations is adopted with its jobs."""

from __future__ import annotations

import time

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from orchestrator.jobs import JobStore
from orchestrator.migrations import BASELINE, alembic_config, head_revision, upgrade_to_head
from orchestrator.tables import Base


def _revision(engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def test_an_empty_database_upgrades_to_head_and_again_without_change(db_url):
    engine = create_engine(db_url)
    try:
        assert _revision(engine) is None
        upgrade_to_head(engine)
        assert _revision(engine) == head_revision()
        tables = set(inspect(engine).get_table_names())
        assert {"vton_jobs", "vton_job_stages", "vton_job_artifacts", "alembic_version"} <= tables
        upgrade_to_head(engine)  # a restart: nothing to do, nothing fails
        assert _revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_the_migrations_build_exactly_the_tables_of_the_models(db_url):
    engine = create_engine(db_url)
    try:
        upgrade_to_head(engine)
        with engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert differences == [], (
        "orchestrator/tables.py and the migrations disagree: add a revision with "
        f"`python -m orchestrator.migrations revision '...'`: {differences}"
    )


def test_a_database_from_before_the_migrations_is_adopted_with_its_jobs(db_url):
    engine = create_engine(db_url)
    try:
        # what `create_all` of the earlier release left: the baseline tables, no version table
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), BASELINE)
            conn.execute(text("DROP TABLE alembic_version"))
            now = time.time()
            conn.execute(
                text(
                    "INSERT INTO vton_jobs (id, status, category, seed, steps, guidance_scale, person_key, "
                    "garment_key, request_id, created_at, updated_at, attempts) VALUES ('a' || :pad, 'queued', "
                    "'dresses', 4, 30, 2.0, 'p.png', 'g.png', 'r', :now, :now, 0)"
                ),
                {"pad": "0" * 31, "now": now},
            )
        store = JobStore(db_url)
        store.upgrade_schema()
        job = store.get("a" + "0" * 31)
        store.close()
    finally:
        engine.dispose()
    assert job is not None and job.status == "queued"
    assert (job.category, job.seed, job.steps, job.guidance_scale, job.scheduler) == (
        "dresses",
        4,
        30,
        2.0,
        None,
    )
