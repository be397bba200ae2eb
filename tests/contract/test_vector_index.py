"""The VectorIndex conformance suite: every registered kind × every metric it supports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from recfunnel.core.errors import (
    ArtifactError,
    ConfigError,
    DataError,
    NotFittedError,
    UnknownIdError,
)
from recfunnel.core.index import METRICS, VectorIndex, normalize_rows
from recfunnel.index import REGISTRY, index_class, load_index, make_index

CASES = [(k, m) for k in sorted(REGISTRY) for m in METRICS if m in index_class(k).metrics]
#: Small but realistic settings per kind (tests stay well under a second each).
PARAMS: dict[str, dict[str, object]] = {"hnsw": {"M": 16}, "ivfpq": {}, "exact": {}, "lsh": {}}
#: Minimum recall@10 on the clustered data below (measured: hnsw 1.0, ivfpq ~0.63-0.70,
#: lsh ~0.49); the margins absorb platform differences in BLAS/k-means rounding.
MIN_RECALL = {"exact": 1.0, "hnsw": 0.9, "ivfpq": 0.5, "lsh": 0.35}

N, D, N_CLUSTERS = 1000, 16, 20


def clustered(n: int, seed: int) -> npt.NDArray[np.float32]:
    """Points around 20 shared centres (real embeddings cluster; uniform noise does not)."""
    centres = np.random.default_rng(99).standard_normal((N_CLUSTERS, D))
    rng = np.random.default_rng(seed)
    return (centres[rng.integers(0, N_CLUSTERS, n)] + 0.35 * rng.standard_normal((n, D))).astype(
        np.float32
    )


ITEMS = clustered(N, 0)
QUERIES = clustered(50, 1)
IDS = [f"i{j}" for j in range(N)]


@pytest.fixture(params=CASES, ids=[f"{k}-{m}" for k, m in CASES])
def case(request: pytest.FixtureRequest) -> tuple[str, str]:
    return request.param  # type: ignore[no-any-return]


def build(kind: str, metric: str, items: npt.NDArray[np.float32] = ITEMS) -> VectorIndex:
    return make_index(kind, metric=metric, **PARAMS[kind]).build(items, IDS[: len(items)])


def brute_scores(
    metric: str, queries: npt.NDArray[np.float32], items: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    if metric == "cosine":
        queries, items = normalize_rows(queries), normalize_rows(items)
    return queries @ items.T


def brute_topk(scores: npt.NDArray[np.float32], k: int) -> list[list[str]]:
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return [[IDS[j] for j in row] for row in order]


def check_rows(ids: npt.NDArray[np.object_], scores: npt.NDArray[np.float32], k: int) -> None:
    assert ids.shape == scores.shape == (ids.shape[0], k)
    for row_ids, row_scores in zip(ids, scores, strict=True):
        real = [s for s in row_ids if s is not None]
        assert len(set(real)) == len(real), "an id returned twice"
        assert np.all(np.diff(row_scores[np.isfinite(row_scores)]) <= 1e-5), "not sorted"


# ---- search quality ----------------------------------------------------------------------
def test_exact_kinds_match_numpy_and_approximate_reach_recall(case: tuple[str, str]) -> None:
    kind, metric = case
    index = build(kind, metric)
    assert len(index) == N and index.dim_ == D
    ids, scores = index.search(QUERIES, 10)
    check_rows(ids, scores, 10)
    brute = brute_scores(metric, QUERIES, ITEMS)
    truth = brute_topk(brute, 10)
    if index.exact:
        # Continuous random data: no ties, so ids and scores must agree exactly.
        assert ids.tolist() == truth
        expect = np.take_along_axis(brute, np.argsort(-brute, axis=1)[:, :10], axis=1)
        np.testing.assert_allclose(scores, expect, rtol=1e-4, atol=1e-4)
    recall = np.mean([len(set(g) & set(t)) / 10 for g, t in zip(ids, truth, strict=True)])
    assert recall >= MIN_RECALL[kind], f"{kind}/{metric}: recall@10 {recall:.3f}"


def test_single_query_and_k_larger_than_index(case: tuple[str, str]) -> None:
    kind, metric = case
    small = ITEMS[:300]
    index = build(kind, metric, small)
    ids, scores = index.search(QUERIES[0], 5)  # a 1-D query is one row
    assert ids.shape == (1, 5) and None not in ids[0]
    ids, scores = index.search(QUERIES[:2], 310)
    assert sorted(ids[0, :300].tolist()) == sorted(IDS[:300])
    assert ids[0, 300:].tolist() == [None] * 10 and np.isneginf(scores[0, 300:]).all()


# ---- exclusion ---------------------------------------------------------------------------
def test_exclusion_returns_k_non_excluded(case: tuple[str, str]) -> None:
    kind, metric = case
    index = build(kind, metric)
    brute = brute_scores(metric, QUERIES, ITEMS)
    top = brute_topk(brute, 40)
    # Exclude each query's true top 40 (the items an index would find first), in mixed
    # container types, plus ids the index has never seen (ignored).
    exclude: list[object] = []
    for r, row in enumerate(top):
        chosen = [*row, f"unknown{r}"]
        exclude.append(set(chosen) if r % 3 == 0 else np.array(chosen) if r % 3 else chosen)
    exclude[1] = None
    ids, scores = index.search(QUERIES, 10, exclude=exclude)  # type: ignore[arg-type]
    check_rows(ids, scores, 10)
    for r, row in enumerate(ids.tolist()):
        assert None not in row
        if r != 1:
            assert not set(row) & set(top[r])
    if index.exact:
        masked = brute.copy()
        for r, row in enumerate(top):
            if r != 1:
                masked[r, [int(s[1:]) for s in row]] = -np.inf
        assert ids.tolist() == brute_topk(masked, 10)


def test_search_labels_equals_search(case: tuple[str, str]) -> None:
    """``search_labels`` (the funnel's path: labels in, labels out) answers what ``search``
    does, exclusions included; ``labels_of`` maps ids to labels (-1 for unknown ids)."""
    kind, metric = case
    index = build(kind, metric)
    top = brute_topk(brute_scores(metric, QUERIES, ITEMS), 15)
    exclude = [[*row, "never-indexed"] for row in top]
    ids, scores = index.search(QUERIES, 10, exclude=exclude)  # type: ignore[arg-type]
    labels, lscores = index.search_labels(
        QUERIES, 10, exclude_labels=[index.labels_of(row) for row in exclude]
    )
    assert labels.dtype == np.int64 and labels.shape == ids.shape
    got = [[index.ids[j] if j >= 0 else None for j in row] for row in labels.tolist()]
    # Labels are positions among the built ids while nothing was removed.
    assert got == ids.tolist()
    np.testing.assert_array_equal(scores, lscores)
    assert index.labels_of(["never-indexed"]).tolist() == [-1]
    with pytest.raises(ConfigError, match="exclude_labels has 1 rows"):
        index.search_labels(QUERIES, 3, exclude_labels=[[0]])


def test_exclusion_leaving_exactly_k_or_fewer(case: tuple[str, str]) -> None:
    """Forces the fallback: only items far down the ranking remain, which an approximate
    search never reaches without widening to an exhaustive scan."""
    kind, metric = case
    index = build(kind, metric)
    worst = np.argsort(brute_scores(metric, QUERIES[:2], ITEMS), axis=1)[:, :7]
    keep0 = {IDS[j] for j in worst[0]}
    keep1 = {IDS[j] for j in worst[1][:3]}
    exclude = [set(IDS) - keep0, set(IDS) - keep1]
    ids, scores = index.search(QUERIES[:2], 7, exclude=exclude)
    assert set(ids[0].tolist()) == keep0
    assert set(ids[1, :3].tolist()) == keep1 and ids[1, 3:].tolist() == [None] * 4
    assert np.isfinite(scores[0]).all() and np.isneginf(scores[1, 3:]).all()


# ---- updates -----------------------------------------------------------------------------
def test_add_then_search_finds_new_items(case: tuple[str, str]) -> None:
    kind, metric = case
    index = build(kind, metric)
    new = QUERIES[:5] * 1.5  # right where the queries look (and long, for dot)
    index.add(new, [f"new{r}" for r in range(5)])
    assert len(index) == N + 5 and "new3" in index
    ids, _ = index.search(QUERIES[:5], 10)
    for r in range(5):
        assert f"new{r}" in ids[r].tolist()
    if index.exact:
        assert ids[:, 0].tolist() == [f"new{r}" for r in range(5)]
    with pytest.raises(DataError, match="already in the index"):
        index.add(new[:1], ["new0"])
    with pytest.raises(DataError, match="duplicate id"):
        index.add(new[:2], ["x", "x"])


def test_remove_then_never_returned(case: tuple[str, str]) -> None:
    kind, metric = case
    index = build(kind, metric)
    top = brute_topk(brute_scores(metric, QUERIES, ITEMS), 5)
    gone = sorted({s for row in top for s in row})
    index.remove(gone)
    assert len(index) == N - len(gone) and gone[0] not in index
    assert index.n_tombstones == (len(gone) if index.removal == "tombstone" else 0)
    ids, _ = index.search(QUERIES, 10)
    assert not set(ids.ravel().tolist()) & set(gone)
    assert None not in ids.ravel().tolist()
    # Unknown (or already removed) ids: clear error, nothing removed.
    with pytest.raises(UnknownIdError, match="not in the index"):
        index.remove([IDS[999], gone[0]])
    assert IDS[999] in index
    index.compact()
    assert index.n_tombstones == 0 and len(index) == N - len(gone)
    assert index._ntotal() == len(index)  # the memory of removed items is reclaimed
    ids2, _ = index.search(QUERIES, 10)
    assert not set(ids2.ravel().tolist()) & set(gone)
    # A removed id can come back (as a new item).
    index.add(QUERIES[:1] * 1.5, [gone[0]])
    assert gone[0] in index.search(QUERIES[:1], 10)[0][0].tolist()


# ---- persistence -------------------------------------------------------------------------
def test_save_load_identical(case: tuple[str, str], tmp_path: Path) -> None:
    kind, metric = case
    index = build(kind, metric)
    index.remove(IDS[:10])
    index.add(QUERIES[:3], ["a", "b", "c"])
    exclude = [set(IDS[10:40])] * len(QUERIES)
    before = index.search(QUERIES, 20), index.search(QUERIES, 20, exclude=exclude)
    index.save(tmp_path / "idx")
    index.save(tmp_path / "idx")  # overwriting an existing directory is atomic too
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["kind"] == kind and manifest["params"]["metric"] == metric
    for loaded in (load_index(tmp_path / "idx"), type(index).load(tmp_path / "idx")):
        assert type(loaded) is type(index) and loaded.get_params() == index.get_params()
        assert len(loaded) == len(index) and loaded.n_tombstones == index.n_tombstones
        after = loaded.search(QUERIES, 20), loaded.search(QUERIES, 20, exclude=exclude)
        for (ids_a, sc_a), (ids_b, sc_b) in zip(before, after, strict=True):
            assert ids_a.tolist() == ids_b.tolist()
            np.testing.assert_array_equal(sc_a, sc_b)
        # Updates keep working after a load.
        loaded.add(QUERIES[3:4], ["d"]).remove(["a"])
        assert "d" in loaded and "a" not in loaded


def test_load_rejects_corrupt_or_foreign(tmp_path: Path) -> None:
    index = build("exact", "dot")
    path = index.save(tmp_path / "idx")
    with pytest.raises(ArtifactError, match="holds a 'exact' index"):
        index_class("hnsw").load(path)
    data = path / "index.bin"
    data.write_bytes(data.read_bytes()[:-4] + b"\x00\x00\x00\x01")
    with pytest.raises(ArtifactError, match="checksum"):
        load_index(path)
    with pytest.raises(ArtifactError, match=r"manifest\.json missing"):
        load_index(tmp_path / "nothing")


# ---- errors ------------------------------------------------------------------------------
def test_bad_inputs_raise_clear_errors(case: tuple[str, str]) -> None:
    kind, metric = case
    fresh = make_index(kind, metric=metric, **PARAMS[kind])
    with pytest.raises(NotFittedError, match="build"):
        fresh.search(QUERIES, 5)
    with pytest.raises(NotFittedError):
        fresh.add(QUERIES[:1], ["x"])
    with pytest.raises(DataError, match="duplicate id 'i1'"):
        fresh.build(ITEMS[:3], ["i0", "i1", "i1"])
    with pytest.raises(DataError, match="3 vectors but 2 ids"):
        fresh.build(ITEMS[:3], ["i0", "i1"])
    with pytest.raises(DataError, match="zero vectors"):
        fresh.build(np.zeros((0, D), np.float32), [])
    bad = ITEMS[:3].copy()
    bad[1, 2] = np.nan
    with pytest.raises(DataError, match="NaN"):
        fresh.build(bad, ["a", "b", "c"])
    index = build(kind, metric)
    with pytest.raises(DataError, match="dimension 8, but the index holds 16-d"):
        index.search(QUERIES[:, :8], 5)
    with pytest.raises(DataError, match="dimension"):
        index.add(np.ones((1, D + 1), np.float32), ["x"])
    for k in (0, -3, 2.5, True):
        with pytest.raises(ConfigError, match="k must be a positive integer"):
            index.search(QUERIES, k)  # type: ignore[arg-type]
    with pytest.raises(UnknownIdError, match="1 id"):
        index.remove(["no-such-item"])
    with pytest.raises(DataError, match="sequence of ids"):
        index.remove("i1")
    with pytest.raises(ConfigError, match="rows but there are"):
        index.search(QUERIES[:2], 5, exclude=[{"i1"}])
    with pytest.raises(ConfigError, match="one collection of ids per query"):
        index.search(QUERIES[:2], 5, exclude={"i1"})  # type: ignore[arg-type]
    with pytest.raises(DataError, match="duplicate id"):
        index.build(ITEMS[:3], ["a", "a", "b"])
    assert len(index) == N and index.dim_ == D  # nothing changed by the failed calls
    assert index.search(QUERIES[:1], 3)[0].shape == (1, 3)


def test_factory_errors() -> None:
    with pytest.raises(ConfigError, match="unknown index kind 'annoy'"):
        make_index("annoy")
    with pytest.raises(ConfigError, match="no parameter"):
        make_index("exact", M=3)
    with pytest.raises(ConfigError, match="metric must be one of"):
        make_index("hnsw", metric="l2")
    with pytest.raises(ConfigError, match="'cosine' only"):
        make_index("lsh", metric="dot")
    with pytest.raises(ConfigError, match="M must be"):
        make_index("hnsw", M=1)
    with pytest.raises(ConfigError, match="threads"):
        make_index("exact", threads=0)
    with pytest.raises(ConfigError, match="must divide"):
        make_index("ivfpq", m=5).build(ITEMS, IDS)
    with pytest.raises(DataError, match="training needs"):
        make_index("ivfpq").build(ITEMS[:100], IDS[:100])


def test_memory_and_repr(case: tuple[str, str]) -> None:
    kind, metric = case
    index = build(kind, metric)
    structure = index.memory_bytes(include_ids=False)
    assert 0 < structure < index.memory_bytes()
    if kind == "ivfpq":  # compressed: far below the float32 vectors
        assert structure < ITEMS.nbytes
    if kind in ("exact", "hnsw"):  # store the float32 vectors
        assert structure >= ITEMS.nbytes
    assert f"n={N}" in repr(index)


def test_search_time_parameters_apply_on_next_search() -> None:
    """``ef_search`` / ``nprobe`` are plain attributes; a change applies to the next search,
    and survives save/load through the manifest's parameters."""
    hnsw = build("hnsw", "dot")
    hnsw.ef_search = 7  # type: ignore[attr-defined]
    hnsw.search(QUERIES[:1], 5)
    assert hnsw._inner.hnsw.efSearch == 7  # type: ignore[attr-defined]
    ivf = build("ivfpq", "dot")
    ivf.nprobe = 3  # type: ignore[attr-defined]
    ivf.search(QUERIES[:1], 5)
    assert ivf.faiss_index.nprobe == 3  # type: ignore[attr-defined]
