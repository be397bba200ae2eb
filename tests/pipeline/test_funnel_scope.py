"""``retrieval.scope = "candidates"``: retrieval through top-k or a vector index, features
relative to the request's candidates; what lets a funnel serve a million-item catalogue."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from funnel_data import clustered

from recfunnel.core.errors import ConfigError
from recfunnel.core.matrix import InteractionMatrix
from recfunnel.pipeline.funnel import Funnel, FunnelContext, _relative_to_candidates
from recfunnel.pipeline.funnel_config import FunnelConfig


def _config(scope: str, als: dict[str, Any] | None = None, **sections: Any) -> FunnelConfig:
    doc: dict[str, Any] = {
        "funnel": {"n": 5},
        "retrieval": {
            "scope": scope,
            "generators": [
                {"model": "als", "quota": 8, "params": {"factors": 8, "iterations": 5},
                 **(als or {})},
                {"model": "itemknn", "quota": 5, "params": {"k": 20}},
                {"model": "pop", "quota": 4},
            ],
        },
        "light": {"model": "lightgbm", "keep": 8, "params": {"n_estimators": 15,
                  "min_child_samples": 5}},
        "training": {"random_negatives": 3, "label_fraction": 0.3},
    }  # fmt: skip
    doc.update(sections)
    return FunnelConfig.from_dict(doc, source="scope.toml")


@pytest.fixture(scope="module")
def data() -> InteractionMatrix:
    return clustered(n_users=90, n_items=70)


@pytest.fixture(scope="module")
def pair(data: InteractionMatrix) -> tuple[Funnel, Funnel]:
    return Funnel(_config("catalogue")).fit(data), Funnel(_config("candidates")).fit(data)


USERS = [f"u{u}" for u in range(0, 90, 4)]


def test_candidates_are_the_catalogue_scopes_candidates(pair: tuple[Funnel, Funnel]) -> None:
    """Both scopes retrieve the same merged lists and give each candidate the same raw
    scores; only the relative features differ."""
    cat, cand = pair
    users = cat.users_.encode(USERS)
    a = cat._candidates(users, None, None, cat.now_, request_offset=0)
    b = cand._candidates(users, None, None, cand.now_, request_offset=0)
    for col in ("request", "item_id", "source", "score_als", "score_itemknn", "score_pop"):
        np.testing.assert_array_equal(a[col], b[col], err_msg=col)


def test_relative_features_match_a_per_request_reference(pair: tuple[Funnel, Funnel]) -> None:
    _, cand = pair
    users = cand.users_.encode(USERS)
    rng = np.random.default_rng(3)
    extra = (rng.integers(0, len(users), 30), rng.integers(0, len(cand.items_), 30))
    frame = cand._candidates(users, None, extra, cand.now_, request_offset=0).to_frame()
    assert (frame["source"] == "random").any()
    for name in ("als", "itemknn", "pop"):
        for r, grp in frame.groupby("request"):
            ref = grp.loc[grp["source"] != "random", f"score_{name}"].to_numpy(np.float64)
            s = grp[f"score_{name}"].to_numpy(np.float64)
            sd = ref.std() if ref.std() > 0 else 1.0
            np.testing.assert_allclose(grp[f"z_{name}"], (s - ref.mean()) / sd, atol=1e-5)
            want_rank = [1 + int((ref > v).sum()) for v in s.astype(np.float32)]
            assert grp[f"rank_{name}"].tolist() == want_rank, (name, r)


def test_relative_ranks_handle_negative_and_tied_scores() -> None:
    req = np.array([0, 0, 0, 0, 1, 1])
    s = np.array([-2.0, -0.0, 0.0, -3.5, 1.0, 1.0], np.float32)
    z, rank = _relative_to_candidates(req, s, np.ones(6, bool), 2)
    assert rank.tolist() == [3.0, 1.0, 1.0, 4.0, 1.0, 1.0]
    assert z[4:].tolist() == [0.0, 0.0]


def test_scoped_funnel_serves_and_excludes(pair: tuple[Funnel, Funnel], data) -> None:
    _, cand = pair
    seen = data.to_csr(binary=True)
    ctx = FunnelContext(exclude=[["i0", "i1"]] * len(USERS))
    recs = cand.recommend(USERS, 5, context=ctx)
    for uid, rec in zip(USERS, recs, strict=True):
        u = int(data.users.encode([uid])[0])
        hist = set(data.items.decode(seen.indices[seen.indptr[u] : seen.indptr[u + 1]]))
        assert len(rec) == 5 and not (set(rec.ids) & (hist | {"i0", "i1"}))


def test_exact_index_retrieves_what_top_k_does(data: InteractionMatrix, tmp_path: Path) -> None:
    """An exact index in place of ALS's dense top-k gives the same candidates (and so the
    same slates); saved with the funnel, loaded back, it answers the same."""
    plain = Funnel(_config("candidates")).fit(data)
    indexed = Funnel(_config("candidates", als={"index": "exact"})).fit(data)
    assert set(indexed.indexes_) == {"als"}
    users = plain.users_.encode(USERS)
    ctx = FunnelContext(exclude=[["i2"]] * len(USERS))
    a = plain.recommend_traced(USERS, 5, context=ctx)
    b = indexed.recommend_traced(USERS, 5, context=ctx)
    assert a.lists["retrieval"] == b.lists["retrieval"]
    assert [r.ids for r in a.lists["rerank"]] == [r.ids for r in b.lists["rerank"]]
    del users
    loaded = Funnel.load(indexed.save(tmp_path / "f"))
    assert (tmp_path / "f" / "indexes" / "als" / "manifest.json").is_file()
    assert loaded.recommend(USERS, 5, context=ctx) == b.lists["rerank"]


def test_config_errors_name_the_key(data: InteractionMatrix) -> None:
    with pytest.raises(ConfigError, match=r"generators\[0\]\.index.*scope = \"candidates\""):
        _config("catalogue", als={"index": "hnsw"})
    with pytest.raises(ConfigError, match=r"generators\[0\]\.index: unknown index kind 'annoy'"):
        _config("candidates", als={"index": "annoy"})
    with pytest.raises(ConfigError, match=r"generators\[0\]\.index_params: given without"):
        _config("candidates", als={"index_params": {"M": 8}})
    with pytest.raises(ConfigError, match=r"retrieval\.scope"):
        _config("everything")
    bad = FunnelConfig.from_dict(
        {"retrieval": {"scope": "candidates",
                       "generators": [{"model": "itemknn", "quota": 3, "index": "exact"}]}},
        source="scope.toml",
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"scope.toml: retrieval.generators\[0\].index: itemknn"):
        Funnel(bad).fit(data)
    with pytest.raises(ConfigError, match=r"generators\[0\]\.index: .*no parameter"):
        Funnel(_config("candidates", als={"index": "hnsw", "index_params": {"efs": 3}})).fit(data)


def test_config_round_trips_scope_and_index() -> None:
    cfg = _config("candidates", als={"index": "hnsw", "index_params": {"M": 8}})
    again = FunnelConfig.from_dict(cfg.to_dict(), source="again")
    assert again.scope == "candidates" and again.retrieval[0].index == "hnsw"
    assert again.retrieval[0].index_params == {"M": 8} and again.retrieval[1].index is None
    assert FunnelConfig.from_dict(_config("catalogue").to_dict()).scope == "catalogue"
