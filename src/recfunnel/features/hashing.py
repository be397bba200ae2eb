"""The one stable hash of the engine, and hashing values into buckets.

**The function.** ``stable_hash64(values, seed)`` is, for each value,

    int.from_bytes(blake2b(str(seed).utf8 + b"\\x1f" + canonical(value).utf8,
                           digest_size=8).digest(), "little")

an unsigned 64-bit integer. BLAKE2b (RFC 7693, :mod:`hashlib`) with an 8-byte digest is defined
bit for bit, so the result is the same in every process, on every machine and in every Python
version; Python's own ``hash`` is salted per process (``PYTHONHASHSEED``) and must never be
used for features. ``seed`` is any string or integer (``0`` and ``"0"`` are the same seed); use
one per feature so that two fields do not share their collisions. ``\\x1f`` (unit separator)
keeps seed and value apart.

``canonical`` turns a value into one string whatever dtype a table brings it in: strings are
unchanged, integers and integral floats are decimal (``25``, ``25.0`` and ``"25"`` hash alike),
other floats are Python's shortest round-trip ``repr``, booleans ``True``/``False``. Missing
values (``None``, ``NaN``, ``pd.NA``) hash as :data:`MISSING_TOKEN`.

For strings this is exactly the two-tower model's ``candidates._tower_features.stable_hash``
(``stable_hash(v, b, salt) == stable_hash64(v, seed=salt) % b``), so the tower can switch to it.

**Buckets.** :func:`hash_buckets` maps values to ids with two reserved ids in front:
``0`` = missing (also the padding of multi-valued fields), ``1`` = out of vocabulary (a value
seen fewer than ``min_count`` times at fit, or never), hashed values ``2 .. n_buckets + 1``.
With ``n_hashes=2`` each value gets two ids from independent bits of its hash (the low 64 bits
modulo ``n_buckets`` and the high 32 bits modulo ``n_buckets``): two values collide in both
only with probability ``1 / n_buckets**2`` ("double hashing"; a model sums or concatenates the
two embeddings).

Each distinct value is hashed once (``pandas.factorize`` first): id columns repeat.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pandas as pd

from recfunnel.core.errors import ConfigError

#: Name of the hash, recorded in saved pipelines.
HASH_NAME = "blake2b-64-le/v1"
#: What missing values hash as (the two-tower encoder's missing token).
MISSING_TOKEN = "\x00missing"
#: Reserved bucket ids.
MISSING_ID = 0
OOV_ID = 1
N_RESERVED = 2
#: Largest bucket count with two hash functions (the second uses 32 bits of the hash).
MAX_DOUBLE_BUCKETS = 2**31


def canonical(value: object) -> str:
    """One string per value, whatever its dtype.

    >>> [canonical(v) for v in ["25", 25, 25.0, np.int64(25), 2.5, True, None, float("nan")]]
    ['25', '25', '25', '25', '2.5', 'True', '\\x00missing', '\\x00missing']
    """
    if isinstance(value, str):
        return value
    if value is None or value is pd.NA or value is pd.NaT:
        return MISSING_TOKEN
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        f = float(value)
        if math.isnan(f):
            return MISSING_TOKEN
        return str(int(f)) if f.is_integer() else repr(f)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="surrogateescape")
    return str(value)


def _as_1d(values: Iterable[object] | npt.ArrayLike) -> npt.NDArray[Any]:
    if isinstance(values, pd.Series | pd.Index):
        arr = values.to_numpy()
        if arr.dtype.kind in "OUST" or not isinstance(arr, np.ndarray):
            arr = values.to_numpy(dtype=object)
        return arr
    if isinstance(values, np.ndarray):
        arr = values
    else:
        items = values if isinstance(values, list | tuple) else list(cast(Iterable[object], values))
        arr = np.asarray(items, dtype=object)
    if arr.ndim != 1:
        raise ConfigError(f"values must be 1-D, got shape {arr.shape}")
    if arr.dtype.kind in "US":
        arr = arr.astype(object)
    return arr


def hash_strings(strings: Iterable[str], seed: int | str = 0) -> npt.NDArray[np.uint64]:
    """:func:`stable_hash64` of values that are already canonical strings (no factorising).

    >>> hash_strings(["a"]).tolist() == stable_hash64(["a"]).tolist()
    True
    """
    return _digests(strings, seed)


def _digests(values: Iterable[object], seed: int | str) -> npt.NDArray[np.uint64]:
    """The hash loop; non-string values are made :func:`canonical` on the way."""
    # Copying the state after the prefix is ~30% faster than hashing prefix + value anew.
    copy = hashlib.blake2b(str(seed).encode("utf-8") + b"\x1f", digest_size=8).copy
    digests: list[bytes] = []
    append = digests.append
    for v in values:
        s = v if type(v) is str else canonical(v)
        h = copy()
        try:
            h.update(s.encode())
        except UnicodeEncodeError:  # lone surrogates (undecodable file names): keep them
            h.update(s.encode("utf-8", errors="surrogatepass"))
        append(h.digest())
    joined = b"".join(digests)
    return np.frombuffer(joined, dtype="<u8").astype(np.uint64)


def stable_hash64(
    values: Iterable[object] | npt.ArrayLike, seed: int | str = 0
) -> npt.NDArray[np.uint64]:
    """The stable 64-bit hash of each value (see the module docstring for the definition).

    >>> stable_hash64(["42", 42, "7"], seed="user").tolist()
    [12176051147315555541, 12176051147315555541, 12035119122011653566]
    >>> (stable_hash64(["42", "7"], seed="user") % np.uint64(1000)).tolist()
    [541, 566]
    """
    arr = _as_1d(values)
    if len(arr) == 0:
        return np.zeros(0, np.uint64)
    if _mostly_distinct(arr):  # factorising would cost more than it saves
        return _digests(arr.tolist(), seed)
    codes, uniques = pd.factorize(arr, use_na_sentinel=True)
    uniq = np.asarray(uniques, dtype=object).tolist()
    hashed = _digests(uniq, seed)
    missing = hash_strings([MISSING_TOKEN], seed)
    return np.concatenate([hashed, missing])[codes]  # code -1 (missing) -> last


def _mostly_distinct(arr: npt.NDArray[Any], sample: int = 10_000) -> bool:
    """Whether a large array looks like unique ids (a strided sample is 90% distinct)."""
    if len(arr) < 10 * sample:
        return False
    probe = arr[:: len(arr) // sample]
    return len(pd.unique(probe)) > 0.9 * len(probe)


def bucket_of(
    hashes: npt.NDArray[np.uint64], n_buckets: int, which: int = 0
) -> npt.NDArray[np.int64]:
    """Bucket ``0 .. n_buckets-1`` of 64-bit hashes under hash function ``which`` (0 or 1).

    ``which=0`` is ``h % n_buckets``; ``which=1`` is ``(h >> 32) % n_buckets``.

    >>> bucket_of(np.array([2**32 + 5], np.uint64), 10, 0).tolist(), bucket_of(
    ...     np.array([2**32 + 5], np.uint64), 10, 1).tolist()
    ([1], [1])
    """
    if n_buckets <= 0:
        raise ConfigError(f"n_buckets must be positive, got {n_buckets}")
    h = np.asarray(hashes, dtype=np.uint64)
    if which == 0:
        return (h % np.uint64(n_buckets)).astype(np.int64)
    if which == 1:
        if n_buckets > MAX_DOUBLE_BUCKETS:
            raise ConfigError(
                f"with two hash functions n_buckets must be <= 2**31, got {n_buckets}"
            )
        return ((h >> np.uint64(32)) % np.uint64(n_buckets)).astype(np.int64)
    raise ConfigError(f"hash function must be 0 or 1, got {which}")


def frequent_hashes(hashes: npt.NDArray[np.uint64], min_count: int) -> npt.NDArray[np.uint64]:
    """Sorted distinct hashes that occur at least ``min_count`` times (the kept vocabulary).

    >>> frequent_hashes(np.array([5, 3, 5, 9, 3, 5], np.uint64), 2).tolist()
    [3, 5]
    """
    uniq, counts = np.unique(np.asarray(hashes, np.uint64), return_counts=True)
    return uniq[counts >= min_count]


def hash_buckets(
    hashes: npt.NDArray[np.uint64],
    missing: npt.NDArray[np.bool_],
    n_buckets: int,
    *,
    n_hashes: int = 1,
    kept: npt.NDArray[np.uint64] | None = None,
) -> npt.NDArray[np.int64]:
    """Bucket ids ``B x n_hashes`` with the reserved ids (see the module docstring).

    ``kept`` (sorted, from :func:`frequent_hashes`) is the vocabulary; ``None`` keeps every
    value, seen or not.

    >>> h = stable_hash64(["a", "b", None, "c"], seed=1)
    >>> kept = frequent_hashes(h[:2], 1)
    >>> hash_buckets(h, np.array([False, False, True, False]), 8, kept=kept)[:, 0].tolist()
    [7, 9, 0, 1]
    """
    if n_hashes not in (1, 2):
        raise ConfigError(f"n_hashes must be 1 or 2, got {n_hashes}")
    out = np.empty((len(hashes), n_hashes), np.int64)
    for k in range(n_hashes):
        out[:, k] = N_RESERVED + bucket_of(hashes, n_buckets, k)
    if kept is not None:
        if len(kept) == 0:
            known = np.zeros(len(hashes), bool)
        else:
            pos = np.minimum(np.searchsorted(kept, hashes), len(kept) - 1)
            known = kept[pos] == hashes
        out[~known] = OOV_ID
    out[np.asarray(missing, bool)] = MISSING_ID
    return out


def is_missing(values: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    """Missing cells (``None``, ``NaN``, ``pd.NA``) of a 1-D array."""
    return np.asarray(pd.isna(values), dtype=bool)
