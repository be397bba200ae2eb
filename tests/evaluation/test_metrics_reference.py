"""Our metrics against independent implementations on many random cases, to 1e-9.

pytrec_eval wraps trec_eval itself (ties: score descending, then document id descending);
ranx is a separate implementation (used on tie-free runs, as its tie order follows insertion).
"""

from __future__ import annotations

import numpy as np
import pytest

from recfunnel.core.matrix import InteractionMatrix
from recfunnel.evaluation.harness import evaluate
from recfunnel.evaluation.metrics import MetricOptions, ranking_metrics

pytrec_eval = pytest.importorskip("pytrec_eval")

K_VALUES = (1, 3, 5, 10)
N_CASES = 60


def _random_case(rng: np.random.Generator, *, ties: bool, graded: bool):
    """Users x items scores and a relevance matrix; every user has >= 1 relevant item."""
    n_users = int(rng.integers(1, 12))
    n_items = int(rng.integers(2, 40))
    if ties:
        scores = rng.integers(0, 3, size=(n_users, n_items)).astype(np.float64)
    else:
        scores = rng.permutation(n_users * n_items).reshape(n_users, n_items) / 7.0
    rel = (rng.random((n_users, n_items)) < rng.uniform(0.05, 0.5)).astype(np.float64)
    if graded:
        rel *= rng.integers(1, 4, size=rel.shape)
    for u in range(n_users):
        if not rel[u].any():
            rel[u, rng.integers(n_items)] = rng.integers(1, 4) if graded else 1
    return scores, rel


def _ids(n: int) -> list[str]:
    # Zero-padded so string order equals numeric order, as trec_eval compares strings.
    return [f"d{j:03d}" for j in range(n)]


def _our_values(scores, rel, metrics, options, ties):
    n_users, n_items = scores.shape
    items = _ids(n_items)
    users = [f"q{u:03d}" for u in range(n_users)]
    uu, ii = np.nonzero(rel)
    test = InteractionMatrix.from_arrays(
        np.array(users)[uu], np.array(items)[ii], value=rel[uu, ii]
    )
    # Re-encode with fixed index order so column j is item d{j}.
    from recfunnel.core.ids import IdIndex

    test = InteractionMatrix.from_arrays(
        np.array(users)[uu],
        np.array(items)[ii],
        value=rel[uu, ii],
        users=IdIndex(users, kind="user"),
        items=IdIndex(items, kind="item"),
    )
    res = evaluate(
        lambda u: scores[u].astype(np.float32),
        test=test,
        metrics=metrics,
        options=options,
        ties=ties,
        relevance="value",
    )
    return {
        m: dict(zip(res.users.tolist(), v.tolist(), strict=True)) for m, v in res.per_user.items()
    }


def _trec_inputs(scores, rel):
    items = _ids(scores.shape[1])
    qrels = {
        f"q{u:03d}": {items[j]: int(rel[u, j]) for j in range(scores.shape[1])}
        for u in range(scores.shape[0])
    }
    run = {
        f"q{u:03d}": {items[j]: float(scores[u, j]) for j in range(scores.shape[1])}
        for u in range(scores.shape[0])
    }
    return qrels, run


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("graded", [False, True])
def test_against_trec_eval(ties: bool, graded: bool) -> None:
    rng = np.random.default_rng(1000 + 2 * ties + graded)
    ours_names = [
        f"{m}@{k}" for m in ("precision", "recall", "map", "ndcg", "hit") for k in K_VALUES
    ]
    trec_names = {
        "precision": "P",
        "recall": "recall",
        "map": "map_cut",
        "ndcg": "ndcg_cut",
        "hit": "success",
    }
    for _ in range(N_CASES):
        scores, rel = _random_case(rng, ties=ties, graded=graded)
        # Scores are float32 inside the harness; keep them exactly representable.
        scores = scores.astype(np.float32).astype(np.float64)
        qrels, run = _trec_inputs(scores, rel)
        measures = {f"{trec_names[m]}_{k}" for m in trec_names for k in K_VALUES} | {"recip_rank"}
        ref = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
        ours = _our_values(
            scores, rel, [*ours_names, f"mrr@{scores.shape[1]}"], MetricOptions.trec(), "trec"
        )
        for u in range(scores.shape[0]):
            for name in ours_names:
                base, k = name.split("@")
                expected = ref[f"q{u:03d}"][f"{trec_names[base]}_{k}"]
                assert ours[name][u] == pytest.approx(expected, abs=1e-9), (name, u)
            expected = ref[f"q{u:03d}"]["recip_rank"]
            assert ours[f"mrr@{scores.shape[1]}"][u] == pytest.approx(expected, abs=1e-9)


def test_against_ranx_without_ties() -> None:
    ranx = pytest.importorskip("ranx")
    rng = np.random.default_rng(7)
    names = {
        "ndcg": "ndcg",
        "map": "map",
        "mrr": "mrr",
        "hit": "hit_rate",
        "precision": "precision",
        "recall": "recall",
    }
    for _ in range(20):
        scores, rel = _random_case(rng, ties=False, graded=True)
        qrels_d, run_d = _trec_inputs(scores, rel)
        qrels_d = {q: {d: r for d, r in docs.items() if r > 0} for q, docs in qrels_d.items()}
        ranx_metrics = [f"{names[m]}@{k}" for m in names for k in K_VALUES] + [
            f"ndcg_burges@{k}" for k in K_VALUES
        ]
        ref = ranx.evaluate(
            ranx.Qrels(qrels_d),
            ranx.Run(run_d),
            ranx_metrics,
            return_mean=False,
            make_comparable=True,
        )
        ours = _our_values(
            scores,
            rel,
            [f"{m}@{k}" for m in names for k in K_VALUES],
            MetricOptions.trec(),
            "index",
        )
        ours_exp = _our_values(
            scores, rel, [f"ndcg@{k}" for k in K_VALUES], MetricOptions(gain="exp"), "index"
        )
        for m, rm in names.items():
            for k in K_VALUES:
                np.testing.assert_allclose(
                    [ours[f"{m}@{k}"][u] for u in range(scores.shape[0])],
                    ref[f"{rm}@{k}"],
                    atol=1e-9,
                    err_msg=f"{m}@{k}",
                )
        for k in K_VALUES:
            np.testing.assert_allclose(
                [ours_exp[f"ndcg@{k}"][u] for u in range(scores.shape[0])],
                ref[f"ndcg_burges@{k}"],
                atol=1e-9,
            )


def test_recbole_defaults_known_answer() -> None:
    # Relevant at ranks 2 and 3, |R| = 4, k = 3. RecBole: binary gain, MAP / min(k, |R|).
    out = ranking_metrics([[0, 1, 1]], [4], ["ndcg@3", "map@3", "precision@3", "hit@3", "mrr@3"])
    idcg = 1 + 1 / np.log2(3) + 1 / np.log2(4)
    assert out["ndcg@3"][0] == pytest.approx((1 / np.log2(3) + 1 / np.log2(4)) / idcg, abs=1e-12)
    assert out["map@3"][0] == pytest.approx((1 / 2 + 2 / 3) / 3, abs=1e-12)
    assert out["precision@3"][0] == pytest.approx(2 / 3)
    assert out["hit@3"][0] == 1.0
    assert out["mrr@3"][0] == 0.5
    trec = ranking_metrics([[0, 1, 1]], [4], ["map@3"], options=MetricOptions.trec())
    assert trec["map@3"][0] == pytest.approx((1 / 2 + 2 / 3) / 4, abs=1e-12)


def test_precision_denominator_variant() -> None:
    out = ranking_metrics(
        [[1, 0, 0]], [1], ["precision@3"], n_returned=[1],
        options=MetricOptions(precision_denominator="returned"),
    )  # fmt: skip
    assert out["precision@3"][0] == 1.0


def test_tie_rules_bound_each_other() -> None:
    # Every item tied: pessimistic puts relevant items last, optimistic first.
    scores = np.zeros((1, 6))
    rel = np.array([[0, 0, 1, 0, 0, 1.0]])
    pess = _our_values(scores, rel, ["hit@2", "ndcg@6"], MetricOptions(), "pessimistic")
    opti = _our_values(scores, rel, ["hit@2", "ndcg@6"], MetricOptions(), "optimistic")
    index = _our_values(scores, rel, ["hit@2", "ndcg@6"], MetricOptions(), "index")
    assert pess["hit@2"][0] == 0.0 and opti["hit@2"][0] == 1.0
    assert opti["ndcg@6"][0] == pytest.approx(1.0)
    assert pess["ndcg@6"][0] < index["ndcg@6"][0] < opti["ndcg@6"][0]
