"""Constants and helpers shared by the service tests (fixtures are in conftest.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import httpx
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():  # starlette's TestClient warns about its httpx transport
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

from recfunnel.candidates import make_generator
from recfunnel.core.matrix import InteractionMatrix

WRITE_KEY = "write-key-0123456789abcdef"
READ_KEY = "read-key-0123456789abcdef"
W = {"X-API-Key": WRITE_KEY}
R = {"X-API-Key": READ_KEY}

#: Users a, b, c; item popularity (distinct users): x 3, y 2, z 1, w 0 (w only in catalogue).
TRAIN_USERS = ["a", "b", "c", "a", "b", "a"]
TRAIN_ITEMS = ["x", "x", "x", "y", "y", "z"]


def train_pop(count: str = "users") -> Any:
    matrix = InteractionMatrix.from_arrays(TRAIN_USERS, TRAIN_ITEMS)
    return make_generator("pop", count=count).fit(matrix)


def store_of(client: TestClient) -> Any:
    return client.app.state.services.store  # type: ignore[attr-defined]


class ServerProcess:
    """``recfunnel serve`` in a real process on a free loopback port, logging to a file.

    ``start()`` waits (bounded) until ``/health`` answers; ``kill()`` sends SIGKILL.
    """

    def __init__(self, store_url: str, log_path: Path, *args: str) -> None:
        self.store_url = store_url
        self.log_path = log_path
        self.args = args
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> ServerProcess:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        env = {**os.environ, "RECFUNNEL_WRITE_KEY": WRITE_KEY, "RECFUNNEL_READ_KEY": READ_KEY}
        code = "import typer; from recfunnel.cli.serve_cmd import serve; typer.run(serve)"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", code, "--store", self.store_url, "--host", "127.0.0.1",
                 "--port", str(self.port), "--log-level", "info", *self.args],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"server not up in {timeout} s: {self.log_path.read_text()[-2000:]}")

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


def history(client: httpx.Client, user_id: str) -> list[str]:
    """Every stored event id of a user, through the API's pagination."""
    ids: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 1000} | ({"cursor": cursor} if cursor else {})
        page = client.get(f"/v1/users/{user_id}/interactions", params=params, headers=W)
        page.raise_for_status()
        body = page.json()
        ids += [row["event_id"] for row in body["interactions"]]
        cursor = body["next"]
        if cursor is None:
            return ids
