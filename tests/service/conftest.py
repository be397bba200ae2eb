"""Fixtures of the service tests: a registry with a known model, app clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from service_helpers import READ_KEY, WRITE_KEY, TestClient, train_pop

from recfunnel.service import ServiceSettings, create_app
from recfunnel.service.registry import publish_model


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    """A registry with version ``v1``: popularity over the training log above."""
    root = tmp_path / "registry"
    publish_model(train_pop().save(tmp_path / "trained-v1"), root, version="v1")
    return root


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    """``make_client(model_dir=None, **settings)``: a TestClient over a fresh SQLite store."""
    clients: list[TestClient] = []

    def make(model_dir: Path | None = None, **options: Any) -> TestClient:
        options.setdefault("poll_seconds", None)
        settings = ServiceSettings(
            store_url=f"sqlite:///{tmp_path / f'events-{len(clients)}.db'}",
            model_dir=model_dir,
            write_key=WRITE_KEY,
            read_key=READ_KEY,
            **options,
        )
        client = TestClient(create_app(settings), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient], registry: Path) -> TestClient:
    """An app serving registry version v1."""
    return make_client(registry)
