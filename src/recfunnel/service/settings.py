"""Typed settings of the HTTP service, checked when the app is created (fail fast).

Configuration flows one way: command line / environment → :class:`ServiceSettings` →
``create_app``. Nothing in the service reads the environment itself; the CLI passes
``os.environ`` to :meth:`ServiceSettings.from_environment`.

>>> s = ServiceSettings(store_url="sqlite:///:memory:", write_key="w" * 16, read_key="r" * 16)
>>> s.write_key
SecretStr('**********')
>>> ServiceSettings(store_url="sqlite:///:memory:", write_key="same-key-16chars",
...                 read_key="same-key-16chars")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
pydantic_core._pydantic_core.ValidationError: 1 validation error for ServiceSettings
...the write key and the read key must differ...
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from recfunnel.core.errors import ConfigError

#: Environment variables holding the API keys (read by the CLI, never by the library).
WRITE_KEY_ENV = "RECFUNNEL_WRITE_KEY"
READ_KEY_ENV = "RECFUNNEL_READ_KEY"
#: Shortest key accepted: 16 characters (e.g. ``python -c "import secrets;
#: print(secrets.token_urlsafe(32))"``).
MIN_KEY_LENGTH = 16


class ServiceSettings(BaseModel):
    """Everything ``create_app`` needs.

    * ``store_url``: the event store (``sqlite:///events.db``, ``postgresql://…``).
    * ``model_dir``: a model registry (``versions/<v>/`` + ``CURRENT``) or one saved model
      directory; ``None`` serves no model (recommendations answer 503 until one is published).
    * ``friends_model_dir``: a saved friend funnel (``recfunnel train-friends``); ``None``
      suggests friends by mutual friends with popular-in-community and popular fallbacks.
    * ``write_key`` / ``read_key``: the API keys (``X-API-Key`` header). The write key
      ingests and administers and may also read; the read key gets recommendations, similar
      items and sends feedback.
    * ``max_body_bytes``: requests with a larger body are refused with 413 before parsing.
    * ``history_limit``: how many of a user's most recent stored events a recommendation
      request reads (to exclude them and to fold new users in); 0 reads none.
    * ``poll_seconds``: how often the registry's ``CURRENT`` pointer is checked for a new
      version (``None``: only ``POST /v1/admin/reload`` swaps).
    * ``request_log_size``: how many recent served request ids the store keeps for feedback
      attribution (shared by every worker of the server, so feedback sent to any of them is
      attributed); 0 keeps none.
    * ``feature_log_dir``: when a funnel is served, log the features of the candidates its
      light stage scored to date-partitioned Parquet here (the served slate always, the rest
      with probability ``feature_log_sample_rate``), under each response's request id;
      ``None`` logs nothing. Buffered rows are written every ``feature_log_flush_seconds``
      (and at shutdown). Deleting a user deletes their logged rows too.
    * ``workers``: how many worker processes serve with these settings (``recfunnel serve
      --workers N``); a served funnel runs at most cores / ``workers`` passes at once in each.
    * ``metrics_dir``: a directory through which the worker processes of one server share
      their metrics (prometheus_client's multiprocess mode; ``recfunnel serve --workers N``
      makes a fresh one); ``None``: ``/metrics`` reports this process only.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    store_url: str = Field(min_length=1)
    model_dir: Path | None = None
    friends_model_dir: Path | None = None
    write_key: SecretStr
    read_key: SecretStr
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    history_limit: int = Field(default=200, ge=0, le=10_000)
    poll_seconds: float | None = Field(default=2.0, gt=0)
    request_log_size: int = Field(default=100_000, ge=0)
    feature_log_dir: Path | None = None
    feature_log_sample_rate: float = Field(default=0.01, ge=0.0, le=1.0)
    feature_log_flush_seconds: float = Field(default=30.0, gt=0)
    workers: int = Field(default=1, ge=1)
    metrics_dir: Path | None = None

    @model_validator(mode="after")
    def _check_keys(self) -> Self:
        for name in ("write_key", "read_key"):
            key = getattr(self, name).get_secret_value()
            if len(key) < MIN_KEY_LENGTH:
                raise ValueError(f"{name} must be at least {MIN_KEY_LENGTH} characters")
            if key != key.strip() or not key.isprintable():
                raise ValueError(f"{name} must be printable, without surrounding spaces")
        if self.write_key.get_secret_value() == self.read_key.get_secret_value():
            raise ValueError("the write key and the read key must differ")
        return self

    @classmethod
    def from_environment(cls, environ: Mapping[str, str], **values: Any) -> Self:
        """Settings from ``values`` plus the keys in ``environ`` (``RECFUNNEL_WRITE_KEY``,
        ``RECFUNNEL_READ_KEY``); a missing key is a clear error, not a default."""
        missing = [v for v in (WRITE_KEY_ENV, READ_KEY_ENV) if not environ.get(v)]
        if missing:
            raise ConfigError(
                f"set {' and '.join(missing)} in the environment (the API keys clients send "
                "in the X-API-Key header)"
            )
        return cls(
            write_key=SecretStr(environ[WRITE_KEY_ENV]),
            read_key=SecretStr(environ[READ_KEY_ENV]),
            **values,
        )
