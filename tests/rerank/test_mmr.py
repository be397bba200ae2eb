"""MMR: hand-computed answers, lambda = 1, and a brute-force reference on random slates."""

from __future__ import annotations

import numpy as np
import pytest

from recfunnel.core.errors import ConfigError, DataError
from recfunnel.core.rerank import RerankContext, Slate
from recfunnel.rerank.diversity import MaximalMarginalRelevance

CTX = RerankContext(now=0.0)

# A and B point the same way, C is orthogonal to both, D sits between (cos(D, A) = 0.6,
# cos(D, C) = 0.8). With lambda = 0.5 and raw relevance (no scaling):
#   step 1: A (0.5 * 0.9 = 0.45)
#   step 2: B 0.40 - 0.5 * 1.0 = -0.10 ; C 0.30 - 0 = 0.30 ; D 0.35 - 0.5 * 0.6 = 0.05 -> C
#   step 3: B 0.40 - 0.5 * 1.0 = -0.10 ; D 0.35 - 0.5 * max(0.6, 0.8) = -0.05          -> D
#   step 4: B (-0.10)
FOUR = Slate.from_lists(
    ["A", "B", "C", "D"],
    [0.9, 0.8, 0.6, 0.7],
    embeddings=[[1.0, 0.0], [2.0, 0.0], [0.0, 3.0], [0.6, 0.8]],  # norms do not matter
    genres=[{"x", "y"}, ["x", "y"], ("z",), "x"],
)


def test_cosine_hand_computed_order_and_gains() -> None:
    out = MaximalMarginalRelevance(lambda_=0.5, normalize=False).rerank(FOUR, CTX)
    assert out.ids() == ["A", "C", "D", "B"]
    np.testing.assert_allclose(out.scores, [0.45, 0.30, -0.05, -0.10], atol=1e-6)
    assert (np.diff(out.scores) <= 0).all()  # marginal values never increase


def test_jaccard_hand_computed_order() -> None:
    # Jaccard: J(A,B) = 1, J(A,C) = 0, J(A,D) = |{x}| / |{x,y}| = 0.5, J(C,D) = 0.
    #   step 2: B 0.40 - 0.5 = -0.10 ; C 0.30 ; D 0.35 - 0.25 = 0.10 -> C
    #   step 3: B -0.10 ; D 0.35 - 0.5 * max(0.5, 0) = 0.10         -> D, then B
    mmr = MaximalMarginalRelevance(lambda_=0.5, similarity="jaccard", normalize=False)
    out = mmr.rerank(FOUR, CTX)
    assert out.ids() == ["A", "C", "D", "B"]
    np.testing.assert_allclose(out.scores, [0.45, 0.30, 0.10, -0.10], atol=1e-12)


@pytest.mark.parametrize("similarity", ["cosine", "jaccard"])
@pytest.mark.parametrize("normalize", [True, False])
def test_lambda_one_is_relevance_order(similarity: str, normalize: bool) -> None:
    mmr = MaximalMarginalRelevance(lambda_=1.0, similarity=similarity, normalize=normalize)
    assert mmr.rerank(FOUR, CTX).ids() == ["A", "B", "D", "C"]


def test_lambda_zero_first_is_most_relevant_then_least_similar() -> None:
    out = MaximalMarginalRelevance(lambda_=0.0, k=2, normalize=False).rerank(FOUR, CTX)
    # Every score counts 0, so the first pick is the first tie (A), then the item least
    # similar to A: C (cos 0).
    assert out.ids() == ["A", "C"]


def _reference_mmr(emb: np.ndarray, rel: np.ndarray, k: int, lam: float) -> list[int]:
    """The definition, written out: recompute max over the selected set at every step."""
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    chosen: list[int] = []
    for _ in range(k):
        best, best_val = -1, -np.inf
        for i in range(len(rel)):
            if i in chosen:
                continue
            penalty = max((float(unit[i] @ unit[j]) for j in chosen), default=0.0)
            val = lam * rel[i] - (1 - lam) * penalty
            if val > best_val + 1e-9:
                best, best_val = i, val
        chosen.append(best)
    return chosen


@pytest.mark.parametrize("seed", range(5))
def test_matches_brute_force_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, k = 30, 10
    emb = rng.normal(size=(n, 6))
    rel = rng.uniform(size=n)
    slate = Slate.from_lists([f"i{j}" for j in range(n)], rel, embeddings=emb)
    out = MaximalMarginalRelevance(lambda_=0.7, k=k, normalize=False).rerank(slate, CTX)
    assert out.ids() == [f"i{j}" for j in _reference_mmr(emb, rel, k, 0.7)]


def test_normalisation_is_min_max_per_request() -> None:
    # Scaling or shifting the scores does not change the order when they are min-max scaled.
    mmr = MaximalMarginalRelevance(lambda_=0.5)
    base = mmr.rerank(FOUR, CTX).ids()
    assert mmr.rerank(FOUR.with_scores(FOUR.scores * 100 - 7), CTX).ids() == base
    constant = mmr.rerank(FOUR.with_scores(np.ones(4)), CTX)
    assert len(constant) == 4 and np.isfinite(constant.scores).all()


def test_k_from_context_and_limits() -> None:
    mmr = MaximalMarginalRelevance(lambda_=0.5, normalize=False)
    assert len(mmr.rerank(FOUR, RerankContext(now=0.0, n=2))) == 2
    assert len(mmr.rerank(FOUR, RerankContext(now=0.0, n=10))) == 4
    assert len(MaximalMarginalRelevance(k=0).rerank(FOUR, CTX)) == 0
    assert len(mmr.rerank(Slate.empty(), CTX)) == 0


def test_errors_say_what_is_missing() -> None:
    no_emb = Slate.from_lists(["a", "b"], [1.0, 0.5])
    with pytest.raises(DataError, match="embeddings"):
        MaximalMarginalRelevance().rerank(no_emb, CTX)
    with pytest.raises(DataError, match="genres"):
        MaximalMarginalRelevance(similarity="jaccard").rerank(no_emb, CTX)
    with pytest.raises(ConfigError, match="lambda_"):
        MaximalMarginalRelevance(lambda_=1.5).rerank(FOUR, CTX)
    with pytest.raises(ConfigError, match="similarity"):
        MaximalMarginalRelevance(similarity="dot").rerank(FOUR, CTX)
