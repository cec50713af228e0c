"""Integration fixtures: one real Prometheus per session, backfilled from the seeded history.

Aspects: promtool backfill of deterministic OpenMetrics; Prometheus on 127.0.0.1 with a long
retention; the generator's truth for the assertions."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.history import History, generate
from tests.integration.prom_fixture import PrometheusServer, backfill, running_prometheus


@pytest.fixture(scope="session")
def prom_history() -> History:
    return generate()


@pytest.fixture(scope="session")
def backfilled_prometheus(
    tmp_path_factory: pytest.TempPathFactory, prom_history: History
) -> Iterator[PrometheusServer]:
    workdir = tmp_path_factory.mktemp("prometheus")
    tsdb = backfill(prom_history.text, workdir / "tsdb")
    with running_prometheus(workdir, tsdb_dir=tsdb) as server:
        yield server
