"""Team-draft interleaving: the drafting rule, credit, and detecting the better ranker."""

from __future__ import annotations

import numpy as np
import pytest

from recfunnel.experiments.interleaving import Interleaving, preference_test, team_draft


class Coins:
    """A scripted coin: each call to integers(2) returns the next flip (1 -> A picks first)."""

    def __init__(self, flips: list[int]) -> None:
        self.flips = list(flips)
        self.used = 0

    def integers(self, _high: int) -> int:
        self.used += 1
        return self.flips.pop(0)


def test_known_answer_with_scripted_coins() -> None:
    a = ["d1", "d2", "d3", "d4"]
    b = ["d2", "d5", "d1", "d6"]
    # Round 1 coin 1: A picks d1, then B (behind) picks d2. Round 2 coin 0: B picks d5, then A
    # picks d3. Round 3 coin 1: A picks d4. Now A has nothing left to give, and the paper's
    # loop runs only while both rankings do, so the list ends before B's d6.
    coins = Coins([1, 0, 1])
    il = team_draft(a, b, rng=coins)  # type: ignore[arg-type]
    assert il.items == ["d1", "d2", "d5", "d3", "d4"]
    assert il.teams == ["A", "B", "B", "A", "A"]
    assert coins.used == 3  # one coin per round, only when the teams are level
    # Coin 0 first: B drafts first and takes d2, A then takes d1.
    il0 = team_draft(a, b, length=2, rng=Coins([0]))  # type: ignore[arg-type]
    assert (il0.items, il0.teams) == (["d2", "d1"], ["B", "A"])


def test_seeded_generator_is_reproducible_and_follows_the_rule() -> None:
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    a, b = list("abcdefgh"), list("hgfedcba")
    il = team_draft(a, b, rng=rng_a)
    assert il == team_draft(a, b, rng=rng_b)
    assert sorted(il.items) == sorted(set(a))  # every item once
    # After every even prefix the teams are level (drafting alternates within rounds).
    for k in range(2, len(il.teams) + 1, 2):
        assert il.teams[:k].count("A") == k // 2
    # Each team's picks keep its own ranker's order.
    for team, ranking in (("A", a), ("B", b)):
        picks = [i for i, t in zip(il.items, il.teams, strict=True) if t == team]
        assert picks == sorted(picks, key=ranking.index)


def test_identical_rankers_keep_the_ranking() -> None:
    il = team_draft([1, 2, 3, 4, 5], [1, 2, 3, 4, 5], rng=0)
    assert il.items == [1, 2, 3, 4, 5]


def test_credit_and_outcome() -> None:
    il = Interleaving(["x", "y", "z", "w"], ["A", "B", "A", "B"])
    assert il.credit({"x", "z"}) == (2, 0) and il.outcome({"x", "z"}) == 1
    assert il.credit({"y"}) == (0, 1) and il.outcome({"y"}) == -1
    assert il.outcome({"x", "y"}) == 0 and il.outcome(set()) == 0


def test_preference_test_known_answer_and_grouping() -> None:
    r = preference_test([1] * 30 + [-1] * 10 + [0] * 60)
    assert (r.wins_a, r.wins_b, r.ties, r.n) == (30, 10, 60, 100)
    assert r.delta_ab == pytest.approx(0.10)
    from scipy import stats

    assert r.p_value == pytest.approx(stats.binomtest(30, 40).pvalue)
    # One heavy user does not outvote three others.
    g = preference_test([1] * 50 + [-1, -1, -1], groups=["heavy"] * 50 + ["u1", "u2", "u3"])
    assert (g.wins_a, g.wins_b, g.unit) == (1, 3, "group")


def test_better_ranker_is_detected_in_simulation() -> None:
    # 40 items, 5 relevant per query. Ranker A puts relevant items near the top, B ranks at
    # random. Users scan top-down and click relevant items with position-decaying probability.
    rng = np.random.default_rng(0)
    outcomes, users = [], []
    for q in range(600):
        items = np.arange(40)
        relevant = set(rng.choice(40, 5, replace=False).tolist())
        noise = rng.normal(size=40)
        a = sorted(items.tolist(), key=lambda i: -(2.0 * (i in relevant) + noise[i]))
        b = rng.permutation(40).tolist()
        il = team_draft(a, b, length=10, rng=rng)
        clicks = {
            i
            for pos, i in enumerate(il.items)
            if i in relevant and rng.random() < 0.8 / (1 + 0.3 * pos)
        }
        outcomes.append(il.outcome(clicks))
        users.append(q % 200)  # 200 users, 3 queries each
    per_impression = preference_test(outcomes)
    per_user = preference_test(outcomes, groups=users)
    assert per_impression.preferred == "A" and per_impression.p_value < 1e-6
    assert per_user.preferred == "A" and per_user.p_value < 1e-4
    # Two copies of one ranker: only the coin decides who gets credit, so no preference.
    same = [team_draft(a, list(a), rng=rng).outcome(set(a[:3])) for _ in range(400)]
    assert preference_test(same).p_value > 0.05
