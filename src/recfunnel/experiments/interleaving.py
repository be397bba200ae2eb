"""Team-draft interleaving (Radlinski, Kurup & Joachims 2008) of two rankers.

Both rankers' results are shown to every user in one merged list, and clicks are credited to
the ranker ("team") that contributed the clicked item. Because each user compares the two
rankers directly, interleaving needs one to two orders of magnitude fewer users than an A/B
test between them for the same sensitivity.

The drafting rule, as in the paper: like captains picking teams, the team with fewer picks so
far chooses next, and a fair coin decides when they are level; a team picks its highest-ranked
item not already in the list. The list ends when either ranking has nothing left to give (or at
``length``).

A ranker wins an impression when its team got more clicks; the preference test is a two-sided
sign (binomial) test of wins against losses, ties left out. Impressions of one user or one query
are not independent, so aggregate per user / per query first (``groups``): each group then gives
one vote, the sign of its summed click difference.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats

from recfunnel.core.errors import ConfigError


@dataclass(frozen=True)
class Interleaving:
    """The merged list and which team (``"A"`` or ``"B"``) contributed each position."""

    items: list[Hashable]
    teams: list[str]

    def credit(self, clicked: Collection[Hashable]) -> tuple[int, int]:
        """Clicks credited to ranker A and to ranker B; clicks on items not shown are ignored.

        >>> Interleaving(["x", "y", "z"], ["A", "B", "B"]).credit({"y", "z", "w"})
        (0, 2)
        """
        clicked = set(clicked)
        a = sum(1 for i, t in zip(self.items, self.teams, strict=True) if t == "A" and i in clicked)
        b = sum(1 for i, t in zip(self.items, self.teams, strict=True) if t == "B" and i in clicked)
        return a, b

    def outcome(self, clicked: Collection[Hashable]) -> int:
        """+1 when A got more clicks, -1 when B did, 0 for a tie (no clicks included)."""
        a, b = self.credit(clicked)
        return int(np.sign(a - b))


def team_draft(
    ranking_a: Sequence[Hashable],
    ranking_b: Sequence[Hashable],
    *,
    length: int | None = None,
    rng: np.random.Generator | int | None = None,
) -> Interleaving:
    """Interleave two rankings by team draft.

    ``rng`` supplies the coin (``rng.integers(2) == 1``: A picks first in that round); one coin
    is drawn each time the teams are level. Seed it per impression for reproducible lists.

    >>> il = team_draft(["a", "b", "c", "d"], ["b", "e", "a", "f"], rng=np.random.default_rng(3))
    >>> il.items, il.teams  # coins 1, 0, 0; then B has nothing left, so "d" is not shown
    (['a', 'b', 'e', 'c', 'f'], ['A', 'B', 'B', 'A', 'B'])
    """
    if length is not None and length < 0:
        raise ConfigError(f"length must be non-negative, got {length}")
    for r, who in ((ranking_a, "A"), (ranking_b, "B")):
        if len(set(r)) != len(r):
            raise ConfigError(f"ranking {who} lists an item twice")
    # Anything with ``integers`` serves as the coin (a Generator, or a scripted one in tests).
    gen = np.random.default_rng(rng) if rng is None or isinstance(rng, int) else rng
    limit = len(set(ranking_a) | set(ranking_b)) if length is None else length
    items: list[Hashable] = []
    teams: list[str] = []
    shown: set[Hashable] = set()
    ia = ib = 0  # the next candidate position in each ranking
    n_a = n_b = 0
    while len(items) < limit:
        while ia < len(ranking_a) and ranking_a[ia] in shown:
            ia += 1
        while ib < len(ranking_b) and ranking_b[ib] in shown:
            ib += 1
        if ia >= len(ranking_a) or ib >= len(ranking_b):
            break
        a_picks = n_a < n_b or (n_a == n_b and int(gen.integers(2)) == 1)
        pick = ranking_a[ia] if a_picks else ranking_b[ib]
        items.append(pick)
        teams.append("A" if a_picks else "B")
        shown.add(pick)
        n_a, n_b = n_a + a_picks, n_b + (not a_picks)
    return Interleaving(items, teams)


@dataclass(frozen=True)
class PreferenceResult:
    """Sign test of ranker A against B over impressions (or per-group votes)."""

    wins_a: int
    wins_b: int
    ties: int
    n: int
    delta_ab: float
    p_value: float
    unit: str

    @property
    def preferred(self) -> str | None:
        """``"A"`` or ``"B"`` when that ranker won more, else ``None`` (read with ``p_value``)."""
        return "A" if self.wins_a > self.wins_b else "B" if self.wins_b > self.wins_a else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"preferred": self.preferred}


def preference_test(
    outcomes: npt.ArrayLike, groups: npt.ArrayLike | None = None
) -> PreferenceResult:
    """Which ranker users prefer, from per-impression outcomes (+1 A, -1 B, 0 tie).

    With ``groups`` (a user or query id per impression) each group votes once with the sign of
    its summed outcomes. ``delta_ab = (wins_a + ties / 2) / n - 1/2`` (Chapelle et al. 2012) is
    positive when A is preferred; the p-value is the two-sided exact binomial test of ``wins_a``
    among ``wins_a + wins_b``.

    >>> r = preference_test([1] * 60 + [-1] * 30 + [0] * 10)
    >>> r.wins_a, r.wins_b, r.ties, round(r.delta_ab, 2), round(r.p_value, 4)
    (60, 30, 10, 0.15, 0.0021)
    >>> preference_test([1, 1, -1, 1], groups=["u1", "u1", "u1", "u2"]).wins_a
    2
    """
    o = np.asarray(outcomes, dtype=np.float64)
    if o.ndim != 1:
        raise ConfigError(f"outcomes must be 1-D, got shape {o.shape}")
    unit = "impression"
    if groups is not None:
        g = np.asarray(groups)
        if g.shape != o.shape:
            raise ConfigError(f"groups has shape {g.shape}, outcomes {o.shape}")
        _, inverse = np.unique(g, return_inverse=True)
        o = np.bincount(inverse, weights=o).astype(np.float64)
        unit = "group"
    s = np.sign(o)
    wins_a, wins_b = int((s > 0).sum()), int((s < 0).sum())
    ties = int(s.size - wins_a - wins_b)
    n = int(s.size)
    delta = (wins_a + ties / 2) / n - 0.5 if n else 0.0
    decided = wins_a + wins_b
    p = float(stats.binomtest(wins_a, decided, 0.5).pvalue) if decided else 1.0
    return PreferenceResult(wins_a, wins_b, ties, n, float(delta), p, unit)
