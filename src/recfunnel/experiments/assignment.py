"""Deterministic assignment of users to the variants of an experiment.

A user's variant is a pure function of ``(experiment salt, user id)``: no table to store, the
same answer on every server and process. The hash is BLAKE2b from :mod:`hashlib`, never Python's
``hash()``, which is salted per process (``PYTHONHASHSEED``) and would reshuffle users on every
restart.

One 16-byte digest gives two independent bucket numbers in ``[0, n_buckets)``:

* the **exposure bucket** decides whether the user is in the experiment at all
  (``bucket < exposure * n_buckets``);
* the **variant bucket** picks the variant from the cumulative weights.

Keeping them apart means ramping exposure up (1% -> 10% -> 50%) only *adds* users: nobody who
was already in switches variant, which would mix two treatments in one user's history.
Changing the weights or the salt does reshuffle, by design: a new salt is a new experiment.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recfunnel.core.errors import ConfigError

DEFAULT_BUCKETS = 10_000


def hash_buckets(salt: str, user_id: object, n_buckets: int = DEFAULT_BUCKETS) -> tuple[int, int]:
    """The (exposure, variant) buckets of one user, each in ``[0, n_buckets)``.

    The user id is hashed through ``str()``, so ``7`` and ``"7"`` are the same user.

    >>> hash_buckets("exp-1", "alice")
    (6268, 1812)
    >>> hash_buckets("exp-1", "alice") == hash_buckets("exp-2", "alice")
    False
    """
    # The 0x1f separator keeps ("ab", "c") and ("a", "bc") apart.
    digest = hashlib.blake2b(f"{salt}\x1f{user_id}".encode(), digest_size=16).digest()
    return (
        int.from_bytes(digest[:8], "big") % n_buckets,
        int.from_bytes(digest[8:], "big") % n_buckets,
    )


@dataclass(frozen=True)
class Assigner:
    """Assigns users to weighted variants of the experiment named by ``salt``.

    ``variants`` maps names to relative weights (``{"control": 1, "treatment": 1}``) or lists
    names for equal weights. ``exposure`` is the share of all users in the experiment; the rest
    get ``None``. Weights are honoured to ``1 / n_buckets``.

    >>> ab = Assigner("checkout-button-2024", {"control": 0.5, "treatment": 0.5})
    >>> ab.assign(["alice", "dave", "grace"])
    ['control', 'treatment', 'treatment']
    >>> ramp = Assigner("checkout-button-2024", ["control", "treatment"], exposure=0.3)
    >>> ramp.assign(["alice", "heidi"])  # alice's exposure bucket is above the first 30%
    [None, 'control']
    """

    salt: str
    variants: Mapping[str, float] | Sequence[str]
    exposure: float = 1.0
    n_buckets: int = DEFAULT_BUCKETS
    _edges: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _names: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.salt, str) or not self.salt:
            raise ConfigError("an experiment needs a non-empty salt (its stable name)")
        if not 0.0 <= self.exposure <= 1.0:
            raise ConfigError(f"exposure must be in [0, 1], got {self.exposure}")
        if self.n_buckets < 2:
            raise ConfigError(f"n_buckets must be at least 2, got {self.n_buckets}")
        weights = _weights(self.variants)
        names = tuple(weights)
        w = np.array([weights[n] for n in names], dtype=np.float64)
        # Upper bucket edge of each variant; the last edge is exactly n_buckets.
        edges = np.rint(np.cumsum(w) / w.sum() * self.n_buckets).astype(np.int64)
        edges[-1] = self.n_buckets
        object.__setattr__(self, "_names", names)
        object.__setattr__(self, "_edges", tuple(int(e) for e in edges))

    @property
    def names(self) -> tuple[str, ...]:
        """Variant names, in allocation order."""
        return self._names

    @property
    def allocation(self) -> dict[str, float]:
        """The share of *all* users each variant gets (exposure included), after bucketing."""
        widths = np.diff(np.concatenate([[0], np.array(self._edges)]))
        share = self._exposed_buckets() / self.n_buckets
        return {
            n: float(share * w / self.n_buckets) for n, w in zip(self._names, widths, strict=True)
        }

    def _exposed_buckets(self) -> int:
        return round(self.exposure * self.n_buckets)

    def assign(self, user_ids: Iterable[object]) -> list[str | None]:
        """Variant of each user, ``None`` for users outside the exposure share.

        A bare ``str`` or ``int`` is a batch of one.
        """
        ids: Iterable[object] = [user_ids] if isinstance(user_ids, (str, int)) else user_ids
        cut = self._exposed_buckets()
        out: list[str | None] = []
        for uid in ids:
            exposure_bucket, variant_bucket = hash_buckets(self.salt, uid, self.n_buckets)
            if exposure_bucket >= cut:
                out.append(None)
                continue
            # side="right": bucket == edge belongs to the next variant (edges are exclusive).
            out.append(self._names[bisect.bisect_right(self._edges, variant_bucket)])
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "salt": self.salt,
            "variants": _weights(self.variants),
            "exposure": self.exposure,
            "n_buckets": self.n_buckets,
            "allocation": self.allocation,
        }


def _weights(variants: Mapping[str, float] | Sequence[str]) -> dict[str, float]:
    if isinstance(variants, str):
        raise ConfigError(f"variants must be a list or a mapping of names, got {variants!r}")
    if isinstance(variants, Mapping):
        weights = {str(k): float(v) for k, v in variants.items()}
    else:
        names = [str(v) for v in variants]
        if len(set(names)) != len(names):
            raise ConfigError(f"variant names must be unique, got {names}")
        weights = dict.fromkeys(names, 1.0)
    if len(weights) < 1:
        raise ConfigError("an experiment needs at least one variant")
    bad = {k: v for k, v in weights.items() if not (v >= 0 and np.isfinite(v))}
    if bad or sum(weights.values()) <= 0:
        raise ConfigError(f"variant weights must be non-negative with a positive sum: {weights}")
    return weights
