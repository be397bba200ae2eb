"""Embedding compression: smaller item (and query) vectors, and what it costs in quality.

Four codecs, each with ``fit`` / ``encode`` / ``decode`` and a memory figure:

| spec     | codec        | bytes (64-d) | how                                             |
|----------|--------------|--------------|-------------------------------------------------|
| fp32     | Float32Codec | 256          | identity (the baseline)                         |
| fp16     | Float16Codec | 128          | IEEE half precision                             |
| int8     | Int8Codec    | 64           | per-dimension symmetric scale, ``round(x/s)``   |
| pca:D    | PCACodec     | 4·D          | centred projection on the top ``D`` components  |
| pq:M[xB] | PQCodec      | M·B/8        | FAISS ProductQuantizer: M codebooks of 2^B (B 8)|

:func:`compare_compression` scores a model with the decoded vectors and reports the quality
lost: NDCG@10 through the full-ranking harness (same masking as any evaluation) and the
overlap recall@100 of the compressed top-100 against the uncompressed top-100.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Self

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from recfunnel.core.errors import ConfigError, DataError, NotFittedError
from recfunnel.core.generator import EmbeddingModel
from recfunnel.core.index import normalize_rows
from recfunnel.core.matrix import InteractionMatrix
from recfunnel.core.topk import topk
from recfunnel.evaluation.harness import evaluate

Vectors = npt.NDArray[np.float32]


def _as_vectors(x: npt.ArrayLike, what: str = "vectors") -> Vectors:
    arr = np.asarray(x)
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise DataError(f"{what} must be a 2-D array (n x d), got shape {arr.shape}")
    out = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(out).all():
        raise DataError(f"{what} contain NaN or infinite values")
    return out


class Codec(ABC):
    """Lossy (or not) vector compression fitted on a sample of vectors."""

    #: The spec string that ``make_codec`` parses back into this codec.
    spec: str
    dim_: int

    def fit(self, vectors: npt.ArrayLike) -> Self:
        """Learn what the codec needs (scales, components, codebooks); returns ``self``."""
        x = _as_vectors(vectors)
        self.dim_ = int(x.shape[1])
        self._fit(x)
        return self

    def _fit(self, x: Vectors) -> None:  # noqa: B027 (optional hook, not abstract)
        """Learn from ``x`` (default: nothing to learn)."""

    def _check(self, x: npt.ArrayLike) -> Vectors:
        if not hasattr(self, "dim_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit() first")
        arr = _as_vectors(x)
        if arr.shape[1] != self.dim_:
            raise DataError(f"vectors have dimension {arr.shape[1]}, the codec {self.dim_}")
        return arr

    @abstractmethod
    def encode(self, vectors: npt.ArrayLike) -> npt.NDArray[Any]:
        """Codes, one row per vector."""

    @abstractmethod
    def decode(self, codes: npt.NDArray[Any]) -> Vectors:
        """Approximate float32 vectors back from codes."""

    @abstractmethod
    def bytes_per_vector(self) -> float:
        """Bytes one encoded vector takes."""

    def overhead_bytes(self) -> int:
        """Bytes of the fitted model itself (scales, components, codebooks)."""
        return 0

    def memory_bytes(self, n: int) -> int:
        """Bytes to hold ``n`` encoded vectors plus the codec model."""
        return round(n * self.bytes_per_vector()) + self.overhead_bytes()

    def round_trip(self, vectors: npt.ArrayLike) -> Vectors:
        """``decode(encode(vectors))``."""
        return self.decode(self.encode(vectors))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r})"


class Float32Codec(Codec):
    """No compression: the baseline row of a comparison."""

    spec = "fp32"

    def encode(self, vectors: npt.ArrayLike) -> Vectors:
        return self._check(vectors).copy()

    def decode(self, codes: npt.NDArray[Any]) -> Vectors:
        return np.ascontiguousarray(codes, dtype=np.float32)

    def bytes_per_vector(self) -> float:
        return 4.0 * self.dim_


class Float16Codec(Codec):
    """IEEE half precision: 2 bytes per dimension, ~3 significant digits; values beyond
    ±65504 overflow, so it fits embeddings (small magnitudes), not raw counts."""

    spec = "fp16"

    def encode(self, vectors: npt.ArrayLike) -> npt.NDArray[np.float16]:
        x = self._check(vectors)
        if np.abs(x).max(initial=0.0) > float(np.finfo(np.float16).max):
            raise DataError("values beyond the float16 range (±65504); use int8 or pca")
        return x.astype(np.float16)

    def decode(self, codes: npt.NDArray[Any]) -> Vectors:
        return np.asarray(codes, dtype=np.float32)

    def bytes_per_vector(self) -> float:
        return 2.0 * self.dim_


class Int8Codec(Codec):
    """Symmetric per-dimension int8: ``code = round(x / s_j)`` with ``s_j = max|x_j| / 127``.

    Per-dimension scales follow each dimension's own range (embedding dimensions differ a lot),
    symmetric so that zero stays exactly zero and inner products need no offset terms.

    >>> x = np.array([[1.0, -0.02], [-0.5, 0.04]], np.float32)
    >>> codec = Int8Codec().fit(x)
    >>> codec.encode(x).tolist()
    [[127, -63], [-64, 127]]
    >>> np.abs(codec.round_trip(x) - x).max() < 0.005
    np.True_
    """

    spec = "int8"

    def _fit(self, x: Vectors) -> None:
        peak = np.abs(x).max(axis=0)
        # A dimension that is zero everywhere gets scale 1 (any scale decodes it to 0).
        self.scale_ = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)

    def encode(self, vectors: npt.ArrayLike) -> npt.NDArray[np.int8]:
        x = self._check(vectors)
        # Vectors beyond the fitted range (items added later) saturate at ±127.
        codes: npt.NDArray[np.int8] = np.clip(np.rint(x / self.scale_), -127, 127).astype(np.int8)
        return codes

    def decode(self, codes: npt.NDArray[Any]) -> Vectors:
        return (np.asarray(codes, dtype=np.float32) * self.scale_).astype(np.float32)

    def bytes_per_vector(self) -> float:
        return float(self.dim_)

    def overhead_bytes(self) -> int:
        return 4 * self.dim_


class PCACodec(Codec):
    """Projection on the top ``dims`` principal components (numpy SVD of the centred data;
    fitted on at most ``max_fit`` rows). Codes are float32 ``dims``-vectors; decoding maps
    back to ``d`` dimensions (``mean + code @ components``).

    >>> rng = np.random.default_rng(0)
    >>> x = (rng.standard_normal((500, 2)) @ rng.standard_normal((2, 6))).astype(np.float32)
    >>> codec = PCACodec(2).fit(x)  # rank-2 data: 2 components lose nothing
    >>> codec.encode(x).shape, bool(np.allclose(codec.round_trip(x), x, atol=1e-4))
    ((500, 2), True)
    """

    def __init__(self, dims: int, *, max_fit: int = 100_000, seed: int = 0) -> None:
        if not isinstance(dims, int) or dims < 1:
            raise ConfigError(f"pca: dims must be a positive integer, got {dims!r}")
        self.dims = dims
        self.max_fit = max_fit
        self.seed = seed
        self.spec = f"pca:{dims}"

    def _fit(self, x: Vectors) -> None:
        if self.dims > x.shape[1]:
            raise ConfigError(f"pca: dims={self.dims} exceeds the dimension {x.shape[1]}")
        if len(x) > self.max_fit:
            rng = np.random.default_rng(self.seed)
            x = x[rng.choice(len(x), self.max_fit, replace=False)]
        self.mean_ = x.mean(axis=0).astype(np.float32)
        _, _, vt = np.linalg.svd((x - self.mean_).astype(np.float64), full_matrices=False)
        self.components_ = np.ascontiguousarray(vt[: self.dims], dtype=np.float32)

    def encode(self, vectors: npt.ArrayLike) -> Vectors:
        codes: Vectors = ((self._check(vectors) - self.mean_) @ self.components_.T).astype(
            np.float32
        )
        return codes

    def decode(self, codes: npt.NDArray[Any]) -> Vectors:
        out: Vectors = (np.asarray(codes, np.float32) @ self.components_ + self.mean_).astype(
            np.float32
        )
        return out

    def bytes_per_vector(self) -> float:
        return 4.0 * self.dims

    def overhead_bytes(self) -> int:
        return 4 * (self.dims + 1) * self.dim_


class PQCodec(Codec):
    """FAISS ``ProductQuantizer``: ``m`` sub-vectors, each replaced by the nearest of
    ``2**nbits`` k-means centroids; ``m·nbits/8`` bytes per vector. ``m`` must divide ``d``
    and training needs at least ``2**nbits`` vectors. ``threads``: FAISS (OpenMP) threads
    for training and encoding; one by default, as OpenMP threads that wait for a busy core
    make k-means many times slower on a shared machine."""

    def __init__(self, m: int, nbits: int = 8, *, threads: int = 1) -> None:
        if not isinstance(m, int) or m < 1:
            raise ConfigError(f"pq: m must be a positive integer, got {m!r}")
        if not isinstance(nbits, int) or not 1 <= nbits <= 16:
            raise ConfigError(f"pq: nbits must be in 1..16, got {nbits!r}")
        if not isinstance(threads, int) or threads < 1:
            raise ConfigError(f"pq: threads must be a positive integer, got {threads!r}")
        self.m = m
        self.nbits = nbits
        self.threads = threads
        self.spec = f"pq:{m}x{nbits}"

    def _fit(self, x: Vectors) -> None:
        import faiss

        from recfunnel.index._faiss import set_threads

        set_threads(self.threads)
        d = x.shape[1]
        if d % self.m:
            raise ConfigError(f"pq: m={self.m} must divide the dimension {d}")
        if len(x) < 2**self.nbits:
            raise DataError(f"pq: training needs at least 2**nbits={2**self.nbits} vectors")
        self.pq_: Any = faiss.ProductQuantizer(d, self.m, self.nbits)
        self.pq_.train(x)

    def encode(self, vectors: npt.ArrayLike) -> npt.NDArray[np.uint8]:
        from recfunnel.index._faiss import set_threads

        x = self._check(vectors)
        set_threads(self.threads)
        codes: npt.NDArray[np.uint8] = self.pq_.compute_codes(x)
        return codes

    def decode(self, codes: npt.NDArray[Any]) -> Vectors:
        out: Vectors = self.pq_.decode(np.ascontiguousarray(codes, dtype=np.uint8))
        return out

    def bytes_per_vector(self) -> float:
        return float(self.pq_.code_size)

    def overhead_bytes(self) -> int:
        return 4 * (1 << self.nbits) * self.dim_


def make_codec(spec: str) -> Codec:
    """A codec from its spec: ``fp32``, ``fp16``, ``int8``, ``pca:DIMS``, ``pq:M`` or
    ``pq:MxNBITS``.

    >>> make_codec("pca:32"), make_codec("pq:16"), make_codec("int8")
    (PCACodec('pca:32'), PQCodec('pq:16x8'), Int8Codec('int8'))
    """
    s = spec.strip().lower()
    simple: dict[str, Callable[[], Codec]] = {
        "fp32": Float32Codec, "float32": Float32Codec, "fp16": Float16Codec,
        "float16": Float16Codec, "int8": Int8Codec,
    }  # fmt: skip
    if s in simple:
        return simple[s]()
    name, _, arg = s.partition(":")
    try:
        if name == "pca" and arg:
            return PCACodec(int(arg))
        if name == "pq" and arg:
            m, _, nbits = arg.partition("x")
            return PQCodec(int(m), int(nbits) if nbits else 8)
    except ValueError:
        pass
    raise ConfigError(f"unknown codec {spec!r}: use fp32, fp16, int8, pca:DIMS or pq:M[xNBITS]")


@dataclass
class CompressionResult:
    """Quality and size of one codec applied to a model's item (and query) vectors."""

    codec: str
    bytes_per_vector: float
    memory_bytes: int
    compression_ratio: float  # float32 item bytes / compressed item bytes (incl. codec model)
    ndcg_original: float
    ndcg_compressed: float
    ndcg_loss: float  # original - compressed (positive = worse)
    ndcg_loss_relative: float  # loss / original
    overlap_recall: float  # |top-k compressed ∩ top-k original| / k, mean over users
    reconstruction_error: float  # mean ||x - x̂||² / mean ||x||² over items
    fit_seconds: float
    k: int
    overlap_k: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare_compression(
    model: EmbeddingModel | tuple[npt.ArrayLike, npt.ArrayLike],
    codecs: Sequence[str | Codec] = ("fp16", "int8", "pca:32", "pq:16"),
    *,
    test: InteractionMatrix,
    train: InteractionMatrix | None = None,
    exclude: Sequence[InteractionMatrix] = (),
    metric: str | None = None,
    k: int = 10,
    overlap_k: int = 100,
    compress_queries: bool = False,
    batch_size: int = 1024,
) -> list[CompressionResult]:
    """Quality lost by compressing a model's item vectors with each codec.

    ``model`` is an :class:`EmbeddingModel` (its ``metric`` applies) or a pair
    ``(user_vectors, item_vectors)`` indexed like ``test.users`` / ``test.items``
    (``metric``: ``"dot"`` by default). Each codec is fitted on the item vectors (normalised
    first for cosine: an index stores them normalised); scores become
    ``query · decode(encode(item))``. With ``compress_queries`` the user vectors go through a
    codec of the same spec fitted on them, as when queries are also stored compressed.

    NDCG@``k`` comes from :func:`recfunnel.evaluation.harness.evaluate` over the users of
    ``test`` with ``train`` and ``exclude`` masked; ``overlap_recall`` is the mean fraction
    of each user's uncompressed top-``overlap_k`` (same masking) kept in the compressed one.

    Each user's test item below is their best item, so the original NDCG@10 is 1:

    >>> from recfunnel.core.ids import IdIndex
    >>> rng = np.random.default_rng(0)
    >>> users, items = rng.standard_normal((30, 8)), rng.standard_normal((40, 8))
    >>> uids, iids = IdIndex(range(30)), IdIndex(range(40), kind="item")
    >>> best = [str(int(np.argmax(items @ u))) for u in users]
    >>> test = InteractionMatrix.from_arrays(uids.ids, best, users=uids, items=iids)
    >>> rows = compare_compression((users, items), ["fp16", "pca:2"], test=test, overlap_k=10)
    >>> [(r.codec, r.ndcg_original, round(r.ndcg_compressed, 2)) for r in rows]
    [('fp16', 1.0, 1.0), ('pca:2', 1.0, 0.52)]
    """
    if k <= 0 or overlap_k <= 0:
        raise ConfigError(f"k and overlap_k must be positive, got {k}, {overlap_k}")
    user_fn, items, metric = _unpack(model, metric, test)
    if metric == "cosine":
        items = normalize_rows(items)
    target = test.to_csr(binary=True)
    users = np.flatnonzero(np.diff(target.indptr) > 0).astype(np.int64)
    chunks = [user_fn(users[s : s + batch_size]) for s in range(0, len(users), batch_size)]
    query_all = _as_vectors(
        np.concatenate(chunks) if chunks else np.zeros((0, items.shape[1]), np.float32),
        "user vectors",
    )
    if metric == "cosine":
        query_all = normalize_rows(query_all)
    if query_all.shape[1] != items.shape[1]:
        raise DataError(
            f"user vectors are {query_all.shape[1]}-d but item vectors {items.shape[1]}-d"
        )
    row_of = np.full(test.n_users, -1, dtype=np.int64)
    row_of[users] = np.arange(len(users))
    masked = sp.csr_matrix(target.shape, dtype=np.float32)
    for part in ([train] if train is not None else []) + list(exclude):
        masked = masked + part.to_csr(binary=True)
    masked = masked.tocsr()

    def scorer(q: Vectors, v: Vectors) -> Callable[[npt.NDArray[np.int64]], Vectors]:
        return lambda u: q[row_of[u]] @ v.T

    def run_ndcg(q: Vectors, v: Vectors) -> float:
        res = evaluate(scorer(q, v), test=test, train=train, exclude=exclude, ks=[k],
                       metrics=["ndcg"], batch_size=batch_size)  # fmt: skip
        return float(res.mean()[f"ndcg@{k}"])

    base = run_ndcg(query_all, items)
    base_top = _masked_topk(query_all, items, users, masked, overlap_k, batch_size)
    item_norm2 = float(np.mean(np.sum(items.astype(np.float64) ** 2, axis=1)))
    results = []
    for spec in codecs:
        codec = make_codec(spec) if isinstance(spec, str) else spec
        started = time.perf_counter()
        codec.fit(items)
        items_c = codec.round_trip(items)
        queries_c = query_all
        if compress_queries and len(query_all):
            queries_c = make_codec(codec.spec).fit(query_all).round_trip(query_all)
        fit_s = time.perf_counter() - started
        comp = run_ndcg(queries_c, items_c)
        top = _masked_topk(queries_c, items_c, users, masked, overlap_k, batch_size)
        overlap = _overlap(base_top, top, overlap_k)
        err = float(np.mean(np.sum((items - items_c).astype(np.float64) ** 2, axis=1)))
        mem = codec.memory_bytes(len(items))
        results.append(
            CompressionResult(
                codec=codec.spec,
                bytes_per_vector=codec.bytes_per_vector(),
                memory_bytes=mem,
                compression_ratio=items.nbytes / mem if mem else float("inf"),
                ndcg_original=base,
                ndcg_compressed=comp,
                ndcg_loss=base - comp,
                ndcg_loss_relative=(base - comp) / base if base else 0.0,
                overlap_recall=overlap,
                reconstruction_error=err / item_norm2 if item_norm2 else 0.0,
                fit_seconds=fit_s,
                k=k,
                overlap_k=overlap_k,
            )
        )
    return results


def _unpack(
    model: EmbeddingModel | tuple[npt.ArrayLike, npt.ArrayLike],
    metric: str | None,
    test: InteractionMatrix,
) -> tuple[Callable[[npt.NDArray[np.int64]], npt.ArrayLike], Vectors, str]:
    if isinstance(model, EmbeddingModel):
        chosen = metric or model.metric
        items = _as_vectors(model.item_vectors(), "item vectors")
        user_fn: Callable[[npt.NDArray[np.int64]], npt.ArrayLike] = model.user_vectors
    elif isinstance(model, tuple) and len(model) == 2:
        chosen = metric or "dot"
        user_arr = _as_vectors(model[0], "user vectors")
        items = _as_vectors(model[1], "item vectors")
        if len(user_arr) != test.n_users:
            raise DataError(f"{len(user_arr)} user vectors for {test.n_users} users in test")
        user_fn = user_arr.__getitem__
    else:
        raise ConfigError("model must be an EmbeddingModel or a (user_vectors, item_vectors) pair")
    if chosen not in ("dot", "cosine"):
        raise ConfigError(f"metric must be 'dot' or 'cosine', got {chosen!r}")
    if len(items) != test.n_items:
        raise DataError(f"{len(items)} item vectors for {test.n_items} items in test")
    return user_fn, items, chosen


def _masked_topk(
    queries: Vectors,
    items: Vectors,
    users: npt.NDArray[np.int64],
    masked: sp.csr_matrix,
    k: int,
    batch_size: int,
) -> npt.NDArray[np.int64]:
    out = []
    for s in range(0, len(users), batch_size):
        ub = users[s : s + batch_size]
        scores = queries[s : s + batch_size] @ items.T
        m = masked[ub]
        scores[np.repeat(np.arange(len(ub)), np.diff(m.indptr)), m.indices] = -np.inf
        out.append(topk(scores, k)[0])
    return np.concatenate(out) if out else np.zeros((0, k), np.int64)


def _overlap(a: npt.NDArray[np.int64], b: npt.NDArray[np.int64], k: int) -> float:
    if not len(a):
        return float("nan")
    hits = [len(np.intersect1d(ra[ra >= 0], rb[rb >= 0])) for ra, rb in zip(a, b, strict=True)]
    denom = np.maximum((a >= 0).sum(axis=1), 1)
    return float(np.mean(np.asarray(hits) / np.minimum(denom, k)))
