"""Loaders: files on disk to a :class:`~recfunnel.core.schema.Dataset`, all or nothing.

One module per format: :mod:`.movielens` (GroupLens MovieLens 100K and 1M), :mod:`.atomic`
(RecBole atomic files, read and written) and :mod:`.tabular` (CSV, TSV, Parquet). A loader either
returns a whole Dataset or raises :class:`~recfunnel.core.errors.DataError` naming the file, the
line (1-based, as in the file) and the field that is wrong.
"""

from __future__ import annotations

from recfunnel.data.loaders.atomic import load_atomic, read_atomic_file, save_atomic
from recfunnel.data.loaders.movielens import load_movielens_1m, load_movielens_100k
from recfunnel.data.loaders.tabular import load_table

__all__ = [
    "load_atomic",
    "load_movielens_1m",
    "load_movielens_100k",
    "load_table",
    "read_atomic_file",
    "save_atomic",
]
