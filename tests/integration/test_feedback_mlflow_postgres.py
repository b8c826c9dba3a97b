"""The feedback path against an MLflow server whose backend store is a real PostgreSQL, as the MLflow role deploys
it: the tests of test_feedback_mlflow.py (traces through the OTLP endpoint, ratings and reviews as assessments, an
outage that delays and loses nothing, `tqa feedback export`, queued traces sent on close), run again on PostgreSQL,
and a look into the database that the traces and assessments are there.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ml.tracking.server import MlflowServer
from tests.integration.test_feedback_mlflow import (  # noqa: F401 (fixtures and tests run again here)
    settings,
    test_an_mlflow_outage_delays_forwarding_and_loses_nothing,
    test_export_stages_approved_corrections_and_well_rated_answers,
    test_queued_traces_are_sent_when_the_tracer_closes,
    test_ratings_and_reviews_become_assessments_once_each,
)
from tests.support.ports import free_port
from tests.support.postgres import Postgres

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    # Not under pytest's temporary root, which only root may enter: the server runs as the `postgres` user.
    directory = Path(tempfile.mkdtemp(prefix="tqa-postgres-"))
    try:
        with Postgres(directory, free_port()) as pg:
            yield pg
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def server(postgres: Postgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    s = MlflowServer(tmp_path_factory.mktemp("mlflow"), port=free_port(), backend_store_uri=postgres.uri).start()
    try:
        yield s
    finally:
        s.stop()


def test_traces_and_assessments_live_in_postgresql(postgres: Postgres, server: MlflowServer) -> None:
    """Runs after the tests above: what they wrote through the server is in PostgreSQL's tables."""
    import psycopg

    with psycopg.connect(f"host=127.0.0.1 port={postgres.port} user=postgres dbname=mlflow") as db:
        traces = db.execute("SELECT count(*) FROM trace_info").fetchone()
        assessments = db.execute("SELECT count(*) FROM assessments WHERE name = 'user_rating'").fetchone()
        spans = db.execute("SELECT count(*) FROM spans").fetchone()
    assert traces is not None and traces[0] >= 30 + 3 + 4 + 1
    assert assessments is not None and assessments[0] >= 3 + 2
    assert spans is not None and spans[0] > traces[0]
