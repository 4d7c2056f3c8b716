"""Session fixtures: one real broker and one real Redis per test session, started
lazily by deploy/local/infra.sh (or taken from FRAUDSTREAM_KAFKA_BOOTSTRAP and
FRAUDSTREAM_REDIS_URL), and unique names per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stream.testing import LocalInfra, local_infra, unique


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalInfra]:
    with local_infra(tmp_path_factory.mktemp("infra")) as running:
        yield running


@pytest.fixture
def uid() -> str:
    """A suffix unique to this test, for topic names, group ids and namespaces."""
    return unique("t")
