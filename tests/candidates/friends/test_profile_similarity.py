"""Profile similarity against an independent encoding (scikit-learn) and cosine."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics.pairwise import cosine_similarity
from sklearn.preprocessing import MultiLabelBinarizer, OneHotEncoder, normalize

from recfunnel.candidates.friends.profile import ProfileSimilarity
from recfunnel.core.errors import ConfigError, UnknownIdError
from recfunnel.core.graph import SocialGraph

RNG = np.random.default_rng(0)
N = 80
USERS = [f"u{k}" for k in range(N)]
PROFILES = pd.DataFrame(
    {
        "user_id": USERS,
        "age_group": RNG.choice(["18-24", "25-34", "35-44"], N),
        "city": RNG.choice(["paris", "lyon", "nice", "lille", None], N),
        "interests": ["|".join(RNG.choice(list("abcdefgh"), RNG.integers(0, 4), replace=False))
                      for _ in range(N)],
        "score": RNG.random(N),  # a float column: left out by default
    }
)  # fmt: skip


def graph() -> SocialGraph:
    src = [f"u{k}" for k in range(0, N - 1, 2)]
    dst = [f"u{k + 1}" for k in range(0, N - 1, 2)]
    edges = pd.DataFrame({"src_user_id": src + dst, "dst_user_id": dst + src})
    return SocialGraph.from_edges(edges, users=USERS)


def reference_similarity(frame: pd.DataFrame) -> np.ndarray:
    """One-hot (sklearn) per categorical column, multi-hot per multi-valued one, each block
    scaled to unit length, then cosine."""
    blocks = []
    for col in ("age_group", "city"):
        values = frame[[col]].astype(object).where(frame[[col]].notna(), "__missing__")
        block = OneHotEncoder(sparse_output=False).fit_transform(values)
        labels = OneHotEncoder().fit(values).categories_[0]
        block = block[:, labels != "__missing__"]
        blocks.append(normalize(block))
    bags = [[t for t in s.split("|") if t] for s in frame["interests"]]
    blocks.append(normalize(MultiLabelBinarizer().fit_transform(bags).astype(float)))
    return cosine_similarity(np.hstack(blocks))


def test_scores_equal_the_reference_cosine() -> None:
    g = graph()
    model = ProfileSimilarity(multi_valued=["interests"]).fit(g, user_features=PROFILES)
    assert model.columns_.tolist() == ["age_group", "city", "interests"]
    sim = reference_similarity(PROFILES)
    for r, rec in enumerate(model.recommend(USERS, n=N)):
        own = {r, r ^ 1}  # themself and their friend
        rows = [int(u[1:]) for u in rec.ids]
        np.testing.assert_allclose(rec.scores, sim[r, rows], rtol=1e-5)
        want = [k for k in np.argsort(-sim[r], kind="stable") if k not in own and sim[r, k] > 1e-6]
        assert sorted(rows) == sorted(want)
        # Best first (up to float32 rounding of equal cosines reached by other sums).
        assert (np.diff(sim[r, rows]) <= 1e-6).all()


def test_hnsw_index_finds_the_same_top() -> None:
    g = graph()
    exact = ProfileSimilarity(multi_valued=["interests"]).fit(g, user_features=PROFILES)
    hnsw = ProfileSimilarity(multi_valued=["interests"], index="hnsw", index_params={"M": 16}).fit(
        g, user_features=PROFILES
    )
    for a, b in zip(exact.recommend(USERS, n=5), hnsw.recommend(USERS, n=5), strict=True):
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5)


def test_new_member_and_profile_edit() -> None:
    g = graph()
    model = ProfileSimilarity(multi_valued=["interests"]).fit(g, user_features=PROFILES)
    g.add_users(["newbie"])
    assert model.recommend(["newbie"], n=3)[0].ids == ()  # no profile yet
    twin = PROFILES.iloc[[10]].assign(user_id="newbie")
    model.add_profiles(twin)
    rec = model.recommend(["newbie"], n=3)[0]
    assert rec.ids[0] == "u10" and rec.scores[0] == pytest.approx(1.0)
    # An edited profile replaces the old vector (and is not indexed twice).
    edited = PROFILES.iloc[[30]].assign(user_id="newbie")
    model.add_profiles(edited)
    rec = model.recommend(["newbie"], n=N)[0]
    assert len(rec.ids) == len(set(rec.ids))
    sim = reference_similarity(pd.concat([PROFILES, edited], ignore_index=True))
    assert rec.ids[0] == "u30"
    np.testing.assert_allclose(rec.scores, sim[N, [int(u[1:]) for u in rec.ids]], rtol=1e-5)
    with pytest.raises(UnknownIdError):
        model.add_profiles(twin.assign(user_id="ghost"))


def test_value_cap_and_unseen_values() -> None:
    g = graph()
    model = ProfileSimilarity(categorical=["city"], max_values=2).fit(g, user_features=PROFILES)
    counts = PROFILES["city"].value_counts()
    top2 = sorted(sorted(counts.index, key=lambda v: (-counts[v], v))[:2])
    assert model.values_.tolist() == top2
    # Users whose city is outside the kept values (or missing) have no profile vector.
    kept = set(PROFILES.user_id[PROFILES.city.isin(top2)])
    assert {f"u{r}" for r in model.rows_.tolist()} == kept


def test_needs_profiles() -> None:
    with pytest.raises(ConfigError, match="user_features"):
        ProfileSimilarity().fit(graph())
