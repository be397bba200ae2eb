"""Numeric columns as they are: user / item attributes, and what each generator said.

Both steps pass numbers through unscaled, with ``NaN`` for missing: the pipeline's
:class:`~recfunnel.features.normalizer.StreamingNormalizer` standardises every dense column
and turns missing values into the mean plus an indicator.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
import pandas as pd

from recfunnel.core.errors import ConfigError
from recfunnel.features.base import (
    FeatureBlock,
    FeatureStep,
    Frame,
    numeric_column,
    require_columns,
)


class NumericColumns(FeatureStep):
    """The given columns as float (non-numbers become ``NaN``).

    >>> frame = pd.DataFrame({"age": [31, None], "price": ["9.5", "n/a"]})
    >>> NumericColumns(["age", "price"]).fit(frame).transform(frame).dense.tolist()
    [[31.0, 9.5], [nan, nan]]
    """

    name: ClassVar[str] = "numeric"
    reads_columns: ClassVar[bool] = True

    def __init__(self, columns: Sequence[str]) -> None:
        self.columns = columns

    def fit(self, frame: pd.DataFrame, events: pd.DataFrame | None = None) -> Self:
        require_columns(frame, list(self.columns), type(self).__name__)
        self.fitted_ = True
        return self

    def transform(self, frame: Frame) -> FeatureBlock:
        self._check_fitted("fitted_")
        cols = list(self.columns)
        require_columns(frame, cols, type(self).__name__)
        dense = np.empty((len(frame), len(cols)), np.float32)
        for j, col in enumerate(cols):
            dense[:, j] = numeric_column(frame, col)
        return FeatureBlock(dense, np.zeros((len(frame), 0), np.int64), tuple(cols), (), ())

    def _set_state(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        self.fitted_ = True


class RetrievalFeatures(FeatureStep):
    """Score and rank of each candidate under every generator that ran.

    The candidate frame has ``{score_prefix}{generator}`` and optionally
    ``{rank_prefix}{generator}`` (1 = the generator's top item) columns, ``NaN`` where that
    generator did not retrieve the row's item. The generators are those found at fit
    (or ``generators``). Per generator the features are the score (``NaN`` if not retrieved) and
    the reciprocal rank (``0`` if not retrieved), then ``n_retrieved``, the number of generators
    that retrieved the item. A generator's columns missing at transform (it failed or timed
    out) read as "not retrieved", so serving degrades instead of failing.

    >>> frame = pd.DataFrame({"score_als": [0.9, np.nan], "rank_als": [1, np.nan],
    ...                       "score_pop": [10.0, 7.0], "rank_pop": [4, 2]})
    >>> step = RetrievalFeatures().fit(frame)
    >>> block = step.transform(frame)
    >>> block.dense_names
    ('als.score', 'als.reciprocal_rank', 'pop.score', 'pop.reciprocal_rank', 'n_retrieved')
    >>> block.dense.tolist()
    [[0.8999999761581421, 1.0, 10.0, 0.25, 2.0], [nan, 0.0, 7.0, 0.5, 1.0]]
    """

    name: ClassVar[str] = "retrieval"
    reads_columns: ClassVar[bool] = True

    def __init__(
        self,
        generators: Sequence[str] | None = None,
        score_prefix: str = "score_",
        rank_prefix: str = "rank_",
    ) -> None:
        self.generators = generators
        self.score_prefix = score_prefix
        self.rank_prefix = rank_prefix

    def fit(self, frame: pd.DataFrame, events: pd.DataFrame | None = None) -> Self:
        if self.generators is not None:
            found = [str(g) for g in self.generators]
            require_columns(frame, [self.score_prefix + g for g in found], "RetrievalFeatures")
        else:
            found = [
                str(c)[len(self.score_prefix) :]
                for c in frame.columns
                if str(c).startswith(self.score_prefix)
            ]
        if not found:
            raise ConfigError(
                f"RetrievalFeatures: no {self.score_prefix}<generator> column in "
                f"{list(frame.columns)}"
            )
        self.generators_ = np.asarray(found, dtype=str)
        return self

    def transform(self, frame: Frame) -> FeatureBlock:
        self._check_fitted("generators_")
        n = len(frame)
        columns: list[npt.NDArray[np.float64]] = []
        names: list[str] = []
        retrieved = np.zeros(n)
        for g in self.generators_.tolist():
            score = _column(frame, self.score_prefix + g, n)
            rank = _column(frame, self.rank_prefix + g, n)
            hit = np.isfinite(score) | np.isfinite(rank)
            retrieved += hit
            reciprocal = np.where(
                np.isfinite(rank) & (rank > 0), 1.0 / np.where(rank > 0, rank, 1), 0.0
            )
            columns += [score, reciprocal]
            names += [f"{g}.score", f"{g}.reciprocal_rank"]
        columns.append(retrieved)
        names.append("n_retrieved")
        dense = np.stack(columns, axis=1).astype(np.float32)
        return FeatureBlock(dense, np.zeros((n, 0), np.int64), tuple(names), (), ())

    def _state(self) -> dict[str, npt.NDArray[Any]]:
        self._check_fitted("generators_")
        return {"generators": self.generators_}

    def _set_state(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        self.generators_ = np.asarray(arrays["generators"], dtype=str)


def _column(frame: Frame, name: str, n: int) -> npt.NDArray[np.float64]:
    if name not in frame.columns:
        return np.full(n, np.nan)
    return numeric_column(frame, name)
