"""Train / validation / test splits and the filters applied before them.

Every split returns parts over the *same* user and item indexes, so a model fitted on the train
part scores the others in the same coordinates. All are deterministic given ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from recfunnel.core.errors import ConfigError
from recfunnel.core.ids import IdIndex
from recfunnel.core.matrix import InteractionMatrix


@dataclass(frozen=True)
class Split:
    """The parts of a split; ``valid`` may be empty."""

    train: InteractionMatrix
    valid: InteractionMatrix
    test: InteractionMatrix

    def describe(self) -> dict[str, int]:
        return {"train": len(self.train), "valid": len(self.valid), "test": len(self.test)}


def recbole_split_counts(total: int, ratios: tuple[float, ...]) -> list[int]:
    """Sizes of the parts of a group of ``total`` rows, exactly as RecBole 1.2.1 computes them
    (``Dataset._calcu_split_ids``): every part but the first is rounded down, then each later
    part whose share is in (0, 1) takes one row from the first, while the first keeps > 1.

    >>> recbole_split_counts(20, (0.8, 0.1, 0.1))
    [16, 2, 2]
    >>> recbole_split_counts(5, (0.8, 0.1, 0.1))
    [3, 1, 1]
    >>> recbole_split_counts(2, (0.8, 0.1, 0.1))
    [1, 0, 1]
    """
    norm = [r / sum(ratios) for r in ratios]
    cnt = [int(r * total) for r in norm]
    cnt[0] = total - sum(cnt[1:])
    for i in range(1, len(norm)):
        if cnt[0] <= 1:
            break
        if 0 < norm[-i] * total < 1:
            cnt[-i] += 1
            cnt[0] -= 1
    return cnt


def _parse_ratios(ratios: tuple[float, ...]) -> tuple[float, ...]:
    if len(ratios) not in (2, 3) or any(r < 0 for r in ratios) or sum(ratios) <= 0:
        raise ConfigError(
            f"ratios must be 2 or 3 non-negative numbers (train, [valid,] test), got {ratios}"
        )
    return tuple(float(r) for r in ratios)


def _empty(m: InteractionMatrix) -> InteractionMatrix:
    return m.subset(np.zeros(len(m), dtype=bool))


def random_split(
    interactions: InteractionMatrix,
    ratios: tuple[float, ...] = (0.8, 0.1, 0.1),
    *,
    seed: int = 2020,
) -> Split:
    """Per-user random ratio split, RecBole's ``RO`` order with ``group_by: user``.

    The whole log is shuffled once with ``seed``; each user's rows, in shuffled order, are cut
    into parts with :func:`recbole_split_counts`. Part sizes per user are exactly RecBole's;
    which rows land in which part depends on the random generator (RecBole's own split can be
    exported and loaded instead when identical rows are needed).

    >>> m = InteractionMatrix.from_arrays(["a"] * 10 + ["b"] * 5, [str(i) for i in range(15)])
    >>> random_split(m, seed=1).describe()
    {'train': 11, 'valid': 2, 'test': 2}
    """
    ratios = _parse_ratios(ratios)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(interactions))
    # Stable sort by user keeps the shuffled order inside each user's group.
    order = perm[np.argsort(interactions.user[perm], kind="stable")]
    counts = np.bincount(interactions.user, minlength=interactions.n_users)
    part = np.empty(len(interactions), dtype=np.int8)
    # Few distinct group sizes exist, so compute the RecBole cut points once per size.
    sizes = np.unique(counts[counts > 0])
    cut_table = {int(n): np.cumsum(recbole_split_counts(int(n), ratios))[:-1] for n in sizes}
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pos_in_group = np.arange(len(order)) - np.repeat(starts, counts)
    group_size = np.repeat(counts, counts)
    for n, cuts in cut_table.items():
        rows = group_size == n
        part[rows] = np.searchsorted(cuts, pos_in_group[rows], side="right")
    labels = np.empty(len(interactions), dtype=np.int8)
    labels[order] = part
    return _from_labels(interactions, labels, len(ratios))


def _from_labels(m: InteractionMatrix, labels: npt.NDArray[np.int8], n_parts: int) -> Split:
    parts = [m.subset(labels == p) for p in range(n_parts)]
    if n_parts == 2:
        return Split(train=parts[0], valid=_empty(m), test=parts[1])
    return Split(train=parts[0], valid=parts[1], test=parts[2])


def temporal_split(
    interactions: InteractionMatrix,
    *,
    test_from: float | None = None,
    valid_from: float | None = None,
    ratios: tuple[float, ...] | None = None,
) -> Split:
    """Global time cut: train before ``valid_from``, valid in [valid_from, test_from), test from
    ``test_from`` on. Cut points can instead be derived from ``ratios`` as time quantiles.

    >>> m = InteractionMatrix.from_arrays(list("aabb"), list("xyxy"), timestamp=[1, 2, 3, 4])
    >>> temporal_split(m, test_from=3).describe()
    {'train': 2, 'valid': 0, 'test': 2}
    """
    ts = interactions.timestamp
    if np.isnan(ts).any():
        raise ConfigError("temporal split needs a timestamp on every interaction")
    if ratios is not None:
        r = _parse_ratios(ratios)
        share = np.cumsum(r) / sum(r)
        cuts = np.quantile(ts, share[:-1], method="lower") if len(ts) else [0.0] * (len(r) - 1)
        # Rows *at* a cut time go after it, so equal timestamps never straddle parts.
        if len(r) == 3:
            valid_from, test_from = float(cuts[0]), float(cuts[1])
        else:
            test_from = float(cuts[0])
    if test_from is None:
        raise ConfigError("temporal_split needs test_from or ratios")
    vf = test_from if valid_from is None else valid_from
    if vf > test_from:
        raise ConfigError(f"valid_from ({vf}) is after test_from ({test_from})")
    labels = np.where(ts >= test_from, 2, np.where(ts >= vf, 1, 0)).astype(np.int8)
    return _from_labels(interactions, labels, 3)


def leave_last_out(interactions: InteractionMatrix, *, k: int = 1, valid: bool = True) -> Split:
    """Each user's last ``k`` interactions by time go to test, the ``k`` before to valid.

    Users with too few interactions keep at least one row in train. Ties in time are broken by
    row order (later rows count as later).

    >>> m = InteractionMatrix.from_arrays(list("aaab"), list("wxyz"), timestamp=[3, 1, 2, 1])
    >>> s = leave_last_out(m, k=1)
    >>> m.items.decode(s.test.item).tolist(), m.items.decode(s.valid.item).tolist()
    (['w'], ['y'])
    """
    if k <= 0:
        raise ConfigError(f"k must be positive, got {k}")
    ts = interactions.timestamp
    if np.isnan(ts).any():
        raise ConfigError("leave_last_out needs a timestamp on every interaction")
    n = len(interactions)
    order = np.lexsort((np.arange(n), ts, interactions.user))
    counts = np.bincount(interactions.user, minlength=interactions.n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    size = np.repeat(counts, counts)
    from_end = size - (np.arange(n) - np.repeat(starts, counts))  # 1 = the last row
    n_test = np.minimum(k, size - 1)
    n_valid = np.minimum(k, size - 1 - n_test) if valid else np.zeros_like(size)
    part = np.where(from_end <= n_test, 2, np.where(from_end <= n_test + n_valid, 1, 0))
    labels = np.empty(n, dtype=np.int8)
    labels[order] = part
    return _from_labels(interactions, labels, 3)


def threshold(interactions: InteractionMatrix, minimum: float) -> InteractionMatrix:
    """Keep interactions whose value is ``>= minimum`` (e.g. ratings >= 4 as positives),
    over the same indexes."""
    return interactions.subset(interactions.value >= minimum)


def k_core(
    interactions: InteractionMatrix,
    *,
    user_k: int = 10,
    item_k: int = 10,
    reindex: bool = True,
) -> InteractionMatrix:
    """Repeatedly drop users with fewer than ``user_k`` and items with fewer than ``item_k``
    distinct interactions until none remain (the k-core). With ``reindex`` the id indexes keep
    only survivors, in their original order.

    >>> m = InteractionMatrix.from_arrays(list("aabbc"), list("xyxyx"))
    >>> k_core(m, user_k=2, item_k=2).users.ids.tolist()
    ['a', 'b']
    """
    keep = np.ones(len(interactions), dtype=bool)
    while True:
        u = np.bincount(interactions.user[keep], minlength=interactions.n_users)
        i = np.bincount(interactions.item[keep], minlength=interactions.n_items)
        bad = keep & ((u[interactions.user] < user_k) | (i[interactions.item] < item_k))
        if not bad.any():
            break
        keep &= ~bad
    out = interactions.subset(keep)
    if not reindex:
        return out
    users_left = np.unique(out.user)
    items_left = np.unique(out.item)
    u_map = np.full(interactions.n_users, -1, np.int32)
    u_map[users_left] = np.arange(len(users_left), dtype=np.int32)
    i_map = np.full(interactions.n_items, -1, np.int32)
    i_map[items_left] = np.arange(len(items_left), dtype=np.int32)
    return InteractionMatrix(
        users=IdIndex(interactions.users.ids[users_left].tolist(), kind="user"),
        items=IdIndex(interactions.items.ids[items_left].tolist(), kind="item"),
        user=u_map[out.user],
        item=i_map[out.item],
        value=out.value,
        timestamp=out.timestamp,
    )


def parse_split_spec(spec: str) -> tuple[str, tuple[float, ...]]:
    """Parse a command-line split: ``ro:0.8,0.1,0.1`` (per-user random ratio),
    ``temporal:0.8,0.1,0.1`` (global time quantiles), ``loo:1`` (leave last k out).

    >>> parse_split_spec("ro:0.8,0.1,0.1")
    ('ro', (0.8, 0.1, 0.1))
    """
    kind, _, rest = spec.partition(":")
    kind = kind.strip().lower()
    if kind not in ("ro", "temporal", "loo"):
        raise ConfigError(f"unknown split {kind!r} in {spec!r}: use ro:, temporal: or loo:")
    try:
        values = tuple(float(x) for x in rest.split(",")) if rest else ()
    except ValueError as exc:
        raise ConfigError(f"split {spec!r}: numbers expected after ':'") from exc
    if kind == "loo":
        values = values or (1.0,)
        if len(values) != 1 or values[0] < 1 or values[0] != int(values[0]):
            raise ConfigError(f"split {spec!r}: loo takes one positive integer k")
    else:
        values = _parse_ratios(values or (0.8, 0.1, 0.1))
    return kind, values


def make_split(interactions: InteractionMatrix, spec: str, *, seed: int = 2020) -> Split:
    """Apply a split given as a :func:`parse_split_spec` string."""
    kind, values = parse_split_spec(spec)
    if kind == "ro":
        return random_split(interactions, values, seed=seed)
    if kind == "temporal":
        return temporal_split(interactions, ratios=values)
    return leave_last_out(interactions, k=int(values[0]))
