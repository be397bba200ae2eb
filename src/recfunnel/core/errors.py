"""Every exception recfunnel raises on purpose.

All derive from builtins so callers can catch ``ValueError`` / ``KeyError`` without knowing
recfunnel; messages say what was wrong, where (file, line, field) and what to do.
Mapping to HTTP status codes happens only at the service edge.
"""

from __future__ import annotations


class RecfunnelError(Exception):
    """Base class of every recfunnel error."""


class DataError(RecfunnelError, ValueError):
    """Input data is malformed. Carries the location when it is known.

    >>> str(DataError("not a number", source="u.data", line=3, field="rating"))
    'u.data, line 3, field rating: not a number'
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.source = source
        self.line = line
        self.field = field
        where = []
        if source is not None:
            where.append(str(source))
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field {field}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class UnknownIdError(RecfunnelError, KeyError):
    """An external id is not in an id index."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class NotFittedError(RecfunnelError, ValueError, AttributeError):
    """A model was used before ``fit`` (or ``load``)."""


class ConfigError(RecfunnelError, ValueError):
    """A parameter or option has an invalid value."""


class ArtifactError(RecfunnelError, ValueError):
    """A saved artefact (model, index, cache) is missing, corrupt or of another version."""


class DatasetUnavailableError(RecfunnelError, RuntimeError):
    """A dataset could not be fetched or found in the cache."""
