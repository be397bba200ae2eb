from __future__ import annotations

import functools
import json

import numpy as np
import numpy.typing as npt
import pytest

from recfunnel.core.errors import ConfigError, DataError, NotFittedError
from recfunnel.core.generator import EmbeddingModel
from recfunnel.core.ids import IdIndex
from recfunnel.core.matrix import InteractionMatrix
from recfunnel.index.compression import (
    Float16Codec,
    Int8Codec,
    PCACodec,
    PQCodec,
    compare_compression,
    make_codec,
)

RNG = np.random.default_rng(0)
D = 32
# Low-rank-ish embeddings with dimensions of very different scales, as trained models have.
X = (RNG.standard_normal((2000, 8)) @ RNG.standard_normal((8, D))).astype(np.float32)
X *= np.linspace(0.1, 2.0, D, dtype=np.float32)
X += 0.05 * RNG.standard_normal(X.shape).astype(np.float32)


@functools.cache  # (PQ training is the slow part; each spec is fitted once per session)
def rel_error(codec_spec: str) -> float:
    codec = make_codec(codec_spec).fit(X)
    return float(np.sum((codec.round_trip(X) - X) ** 2) / np.sum(X**2))


@pytest.mark.parametrize(
    ("spec", "code_dtype", "bytes_per_vector", "max_error"),
    [
        ("fp32", np.float32, 4 * D, 0.0),
        ("fp16", np.float16, 2 * D, 1e-6),
        ("int8", np.int8, D, 1e-3),
        ("pca:8", np.float32, 4 * 8, 0.01),  # the data has rank 8 plus a little noise
        ("pq:8", np.uint8, 8, 0.1),
        ("pq:8x4", np.uint8, 4, 0.3),
    ],
)
def test_codecs_round_trip(
    spec: str, code_dtype: type, bytes_per_vector: int, max_error: float
) -> None:
    codec = make_codec(spec).fit(X)
    codes = codec.encode(X[:10])
    assert codes.dtype == code_dtype and len(codes) == 10
    back = codec.decode(codes)
    assert back.dtype == np.float32 and back.shape == (10, D)
    assert codec.bytes_per_vector() == bytes_per_vector
    assert codec.memory_bytes(1000) == 1000 * bytes_per_vector + codec.overhead_bytes()
    assert rel_error(spec) <= max_error
    assert make_codec(codec.spec).spec == codec.spec  # the spec round-trips


def test_errors_shrink_with_more_bits() -> None:
    assert rel_error("fp16") < rel_error("int8") < rel_error("pq:16x6") < rel_error("pq:4x6")
    assert rel_error("pca:8") < rel_error("pca:4") < rel_error("pca:2")


def test_int8_saturates_and_keeps_zero() -> None:
    codec = Int8Codec().fit(np.array([[1.0, 0.0], [-2.0, 0.0]], np.float32))
    assert codec.encode(np.array([[10.0, 0.0]], np.float32)).tolist() == [[127, 0]]
    assert codec.round_trip(np.zeros((1, 2), np.float32)).tolist() == [[0.0, 0.0]]


def test_codec_errors() -> None:
    with pytest.raises(NotFittedError):
        Int8Codec().encode(X)
    with pytest.raises(DataError, match="dimension"):
        Int8Codec().fit(X).encode(X[:, :5])
    with pytest.raises(DataError, match="float16 range"):
        Float16Codec().fit(X).encode(np.full((1, D), 1e6, np.float32))
    with pytest.raises(DataError, match="NaN"):
        Float16Codec().fit(np.full((2, 2), np.nan))
    with pytest.raises(ConfigError, match="exceeds the dimension"):
        PCACodec(64).fit(X)
    with pytest.raises(ConfigError, match="must divide"):
        PQCodec(5).fit(X)
    with pytest.raises(DataError, match="at least"):
        PQCodec(4).fit(X[:100])
    for bad in ("zip", "pca:", "pca:x", "pq:ax8"):
        with pytest.raises(ConfigError, match="unknown codec"):
            make_codec(bad)


# ---- quality of a compressed model -------------------------------------------------------
N_USERS, N_ITEMS = 200, 300


def mf_data(seed: int = 0) -> tuple[npt.NDArray[np.float32], ...]:
    rng = np.random.default_rng(seed)
    users = rng.standard_normal((N_USERS, D)).astype(np.float32)
    items = (rng.standard_normal((N_ITEMS, D)) * np.linspace(0.2, 1.5, D)).astype(np.float32)
    return users, items


def split(users: npt.NDArray[np.float32], items: npt.NDArray[np.float32]):
    """Train: each user's 5 best items; test: the next 3 (so a perfect model scores 1)."""
    uidx, iidx = IdIndex(range(N_USERS)), IdIndex(range(N_ITEMS), kind="item")
    order = np.argsort(-(users @ items.T), axis=1)
    rows = np.repeat(np.arange(N_USERS), 5)
    train = InteractionMatrix.from_arrays(
        rows.astype(str), order[:, :5].ravel().astype(str), users=uidx, items=iidx
    )
    rows = np.repeat(np.arange(N_USERS), 3)
    test = InteractionMatrix.from_arrays(
        rows.astype(str), order[:, 5:8].ravel().astype(str), users=uidx, items=iidx
    )
    return train, test


class FakeEmbeddingModel:
    def __init__(self, users: npt.NDArray[np.float32], items: npt.NDArray[np.float32]) -> None:
        self.metric = "dot"
        self._u, self._i = users, items
        self.calls = 0

    def user_vectors(self, users: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        self.calls += 1
        return self._u[users]

    def item_vectors(self) -> npt.NDArray[np.float32]:
        return self._i


def test_compare_compression_orders_codecs_by_quality() -> None:
    users, items = mf_data()
    train, test = split(users, items)
    model = FakeEmbeddingModel(users, items)
    assert isinstance(model, EmbeddingModel)
    rows = compare_compression(
        model, ["fp32", "fp16", "int8", "pca:8", "pq:8x4"], test=test, train=train,
        batch_size=64,
    )  # fmt: skip
    by = {r.codec: r for r in rows}
    assert model.calls >= 4  # user vectors were asked for in batches
    assert by["fp32"].ndcg_original == pytest.approx(1.0)
    assert by["fp32"].ndcg_loss == 0.0 and by["fp32"].overlap_recall == 1.0
    assert by["fp16"].ndcg_loss == pytest.approx(0.0, abs=0.01)
    assert by["fp16"].overlap_recall > 0.98
    assert by["int8"].overlap_recall > 0.9
    assert by["pca:8"].ndcg_loss > by["int8"].ndcg_loss
    assert by["pq:8x4"].overlap_recall < by["int8"].overlap_recall
    assert by["int8"].compression_ratio == pytest.approx(4 * D * N_ITEMS / (D * N_ITEMS + 4 * D))
    for r in rows:
        assert r.k == 10 and r.overlap_k == 100
        assert r.ndcg_loss_relative == pytest.approx(r.ndcg_loss / r.ndcg_original)
        json.dumps(r.to_dict())


def test_compare_compression_cosine_and_queries() -> None:
    users, items = mf_data(1)
    train, test = split(users, items)
    rows = compare_compression(
        (users, items), ["int8"], test=test, train=train, metric="cosine", overlap_k=20,
        compress_queries=True,
    )  # fmt: skip
    assert 0.0 < rows[0].ndcg_original <= 1.0 and rows[0].overlap_recall > 0.8
    # Cosine stores unit vectors: the reconstruction error is relative to those.
    assert rows[0].reconstruction_error < 1e-3


def test_compare_compression_errors() -> None:
    users, items = mf_data()
    _, test = split(users, items)
    with pytest.raises(DataError, match="item vectors"):
        compare_compression((users, items[:10]), ["fp16"], test=test)
    with pytest.raises(DataError, match="user vectors"):
        compare_compression((users[:10], items), ["fp16"], test=test)
    with pytest.raises(ConfigError, match="EmbeddingModel"):
        compare_compression(items, ["fp16"], test=test)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="metric"):
        compare_compression((users, items), ["fp16"], test=test, metric="l2")
