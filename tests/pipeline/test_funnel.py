"""The funnel: merge with quotas and de-duplication, stage sizes, fallback, persistence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from funnel_data import clustered

from recfunnel.candidates import make_generator
from recfunnel.core.errors import ArtifactError, NotFittedError
from recfunnel.core.matrix import InteractionMatrix
from recfunnel.data.splits import random_split
from recfunnel.evaluation.harness import FullRanking
from recfunnel.pipeline.funnel import Funnel, FunnelContext
from recfunnel.pipeline.funnel_config import FunnelConfig
from recfunnel.pipeline.funnel_eval import evaluate_funnel_stages


def _config(**sections: Any) -> FunnelConfig:
    doc: dict[str, Any] = {
        "funnel": {"n": 5},
        "retrieval": {
            "generators": [
                {"model": "itemknn", "quota": 6, "params": {"k": 20}},
                {"model": "pop", "quota": 4},
            ]
        },
    }
    doc.update(sections)
    return FunnelConfig.from_dict(doc, source="test.toml")


RANKED = {
    "light": {"model": "lightgbm", "keep": 7, "params": {"n_estimators": 20,
              "min_child_samples": 5, "objective": "lambdarank"}},
    "heavy": {"model": "lightgbm", "keep": 4, "params": {"n_estimators": 20,
              "min_child_samples": 5}},
    "training": {"random_negatives": 2, "negative_keep_rate": 0.5, "label_fraction": 0.3},
}  # fmt: skip


@pytest.fixture(scope="module")
def data() -> InteractionMatrix:
    return clustered()


@pytest.fixture(scope="module")
def ranked_funnel(data: InteractionMatrix) -> Funnel:
    return Funnel(_config(**RANKED)).fit(data)


def test_retrieval_merges_quotas_in_order_without_duplicates(data: InteractionMatrix) -> None:
    funnel = Funnel(_config()).fit(data)
    knn = make_generator("itemknn", k=20).fit(data)
    pop = make_generator("pop").fit(data)
    users = [f"u{u}" for u in range(0, 80, 7)]
    trace = funnel.recommend_traced(users, 5)
    for uid, got, a, b in zip(
        users, trace.lists["retrieval"], knn.recommend(users, 6), pop.recommend(users, 4),
        strict=True,
    ):  # fmt: skip
        # The first generator's quota first, then the second's items not already proposed.
        want = list(a.ids) + [i for i in b.ids if i not in a.ids]
        assert list(got.ids) == want, uid
        assert len(set(got.ids)) == len(got.ids) <= 6 + 4
        seen = set(data.items.decode(data.item[data.user == data.users.encode([uid])[0]]))
        assert not set(got.ids) & seen
    # Retrieval only: the final slate is the merged list's head.
    assert [list(x.ids) for x in trace.lists["rerank"]] == [
        list(x.ids[:5]) for x in trace.lists["retrieval"]
    ]


def test_stage_sizes_shrink_down_the_funnel(ranked_funnel: Funnel) -> None:
    users = [f"u{u}" for u in range(80)]
    trace = ranked_funnel.recommend_traced(users, 3)
    for r in range(len(users)):
        ret, light, heavy, final = (trace.lists[s][r].ids for s in
                                    ("retrieval", "light", "heavy", "rerank"))  # fmt: skip
        assert len(ret) <= 10 and len(light) == min(7, len(ret))
        assert len(heavy) == min(4, len(light)) and len(final) == 3
        assert set(light) <= set(ret) and set(heavy) <= set(light)
        assert list(final) == list(heavy[:3])  # enough ranked items: no fallback needed
        scores = trace.lists["heavy"][r].scores
        assert list(scores) == sorted(scores, reverse=True)
    assert set(trace.seconds) == {"retrieval", "features", "light", "heavy", "rerank"}
    assert all(v >= 0 for v in trace.seconds.values())


def test_fallback_fills_unknown_users_with_popular_items(
    ranked_funnel: Funnel, data: InteractionMatrix
) -> None:
    counts = np.diff(data.to_csr().tocsc().indptr)
    popular = data.items.decode(np.lexsort((np.arange(len(counts)), -counts))[:5]).tolist()
    out = ranked_funnel.recommend(["stranger", "u0"], 5)
    assert list(out[0].ids) == popular
    assert len(out[1].ids) == 5 and list(out[1].ids) != popular
    # Excluded items never come back, not even through the fallback.
    ctx = FunnelContext(exclude=[popular[:2], []])
    out = ranked_funnel.recommend(["stranger", "u0"], 5, context=ctx)
    assert list(out[0].ids) == popular[2:] + [i for i in out[0].ids if i not in popular]
    assert not set(out[0].ids) & set(popular[:2]) and len(out[0].ids) == 5


def test_a_short_slate_is_filled_from_popular(data: InteractionMatrix) -> None:
    funnel = Funnel(_config(retrieval={"generators": [{"model": "pop", "quota": 2}]})).fit(data)
    out = funnel.recommend(["u1"], 6)[0]
    seen = set(data.items.decode(data.item[data.user == data.users.encode(["u1"])[0]]))
    assert len(out.ids) == 6 and not set(out.ids) & seen and len(set(out.ids)) == 6


def test_binary_scores_are_corrected_for_negative_downsampling(data: InteractionMatrix) -> None:
    from recfunnel.evaluation.calibration import correct_downsampled

    cfg = _config(
        light={"model": "lightgbm", "keep": 5, "params": {"n_estimators": 10,
               "min_child_samples": 5}},
        training={"negative_keep_rate": 0.25},
    )  # fmt: skip
    funnel = Funnel(cfg).fit(data)
    trace = funnel.recommend_traced(["u3"], 5)
    assert funnel.light_ is not None and funnel.features_ is not None
    # Recompute the light scores of the kept items directly from the ranker.
    frame = funnel._candidates(funnel.users_.encode(["u3"]), None, None, funnel.now_,
                               request_offset=0)  # fmt: skip
    raw = funnel.light_.predict(funnel.features_.transform(frame).to_ranker_features())
    by_item = dict(zip(frame["item_id"], correct_downsampled(raw, 0.25), strict=True))
    got = trace.lists["light"][0]
    np.testing.assert_allclose(got.scores, [by_item[i] for i in got.ids], rtol=1e-6)


def test_save_load_round_trip(ranked_funnel: Funnel, tmp_path: Path) -> None:
    users = ["u0", "u5", "stranger"]
    path = ranked_funnel.save(tmp_path / "funnel")
    loaded = Funnel.load(path)
    assert loaded.recommend(users) == ranked_funnel.recommend(users)
    assert loaded.config == FunnelConfig.from_dict(
        ranked_funnel.config.to_dict(), source=str(path / "manifest.json")
    )
    (path / "arrays.npz").write_bytes(b"tampered")
    with pytest.raises(ArtifactError, match="checksum"):
        Funnel.load(path)
    with pytest.raises(ArtifactError, match="no funnel artefact"):
        Funnel.load(tmp_path / "nothing")
    with pytest.raises(NotFittedError):
        Funnel(_config()).recommend(["u0"])


def test_retrieval_only_funnel_evaluates_like_its_generator(data: InteractionMatrix) -> None:
    """An independent path: the harness on the generator's scores gives the same metrics."""
    parts = random_split(data, (0.7, 0.1, 0.2), seed=1)
    cfg = _config(retrieval={"generators": [{"model": "itemknn", "quota": 30,
                                             "params": {"k": 20}}]})  # fmt: skip
    funnel = Funnel(cfg).fit(parts.train)
    fr = FullRanking(parts.test, train=parts.train, exclude=[parts.valid])
    results, seconds = evaluate_funnel_stages(funnel, parts, ks=[5], protocol=fr)
    want = fr.evaluate(funnel.generators_["itemknn"], ks=[5])
    for metric, values in want.per_user.items():
        np.testing.assert_allclose(results["rerank"].per_user[metric], values, err_msg=metric)
    assert set(results) == {"retrieval", "rerank"} and seconds["retrieval"] > 0


def test_valid_labels_train_rankers_on_the_served_retrieval(data: InteractionMatrix) -> None:
    parts = random_split(data, (0.7, 0.3), seed=2)
    training = {**RANKED["training"], "labels": "valid"}
    funnel = Funnel(_config(light=RANKED["light"], training=training))
    funnel.fit(parts.train, valid=parts.test)
    # Retrieval was fitted once, on the training part only: what it serves is what it saw.
    assert (funnel.seen_ != parts.train.to_csr()).nnz == 0
    assert funnel.generators_["pop"].seen_.sum() == parts.train.to_csr().sum()
    assert funnel.light_ is not None and len(funnel.recommend(["u2"])[0].ids) == 5
    with pytest.warns(UserWarning, match="no validation interactions"):
        Funnel(_config(light=RANKED["light"], training=training)).fit(parts.train)
