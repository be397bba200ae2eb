r"""Choosing an index: measure every kind on *your* vectors, then read the trade-off.

:func:`benchmark_indexes` builds each kind on the item vectors and measures build time,
memory, recall@k against exact search, single-query latency (p50/p99) of this wrapper and of
the FAISS object underneath (same index, same queries, interleaved, so the difference is the
wrapper's overhead) and says how each supports updates. :func:`render_table` and
:func:`plot_tradeoff` (recall vs p50 latency) present the rows; ``recfunnel index-bench`` runs it
all from the command line.

Rules of thumb, from ``benchmarks/index_bench.py`` on clustered synthetic 64-d vectors (dot
product unless noted, one search thread, a busy 2-core machine):

| kind  | measured                                          | pick it when          | remove      |
|-------|---------------------------------------------------|-----------------------|-------------|
| exact | 200k: 10 ms p50; 1M, k=500: 40 ms; 304 B/item     | < ~100k items, or as  | native      |
|       |                                                   | the recall reference  |             |
| hnsw  | 200k, ef 125: recall@100 0.96, 0.18 ms; 1M, k=500 | latency matters and   | tombstone * |
|       | ef 500: recall@500 0.89, 0.86 ms; 576 B/item      | the floats fit        |             |
| ivfpq | 200k, m 16, nprobe 16: recall@100 0.88 (cosine    | memory is the limit   | native      |
|       | 0.78), 0.12 ms; 25 B/item (12x less than exact)   |                       |             |
| lsh   | 200k, 256 bits: recall@100 0.75 (cosine), 0.52    | cosine models, tiny   | native      |
|       | against a dot truth; 0.30 ms; 80 B/item           | codes, no training    |             |

\* FAISS's HNSW cannot delete a node: ``remove`` hides items (filtered at search time, by
over-fetching) and ``compact()`` rebuilds the graph to reclaim their memory. Every kind adds
natively. Build times differ most: HNSW 76 s for 200k (2 threads), IVF-PQ 23 s (k-means
training, 1 thread), exact and LSH a few seconds.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from recfunnel.core.errors import ConfigError, DataError
from recfunnel.core.index import METRICS, normalize_rows
from recfunnel.index import REGISTRY, index_class, make_index

if TYPE_CHECKING:
    from rich.table import Table

#: How each removal mode reads in the table.
REMOVAL_TEXT = {"native": "native", "tombstone": "tombstone + compact()"}


@dataclass
class IndexBenchRow:
    """Measurements of one index kind on one set of vectors."""

    kind: str
    metric: str
    params: dict[str, Any]
    n_items: int
    dim: int
    k: int
    build_s: float
    memory_bytes: int  # the index structure (vectors/codes, graph, FAISS id map)
    id_bytes: int  # the Python id bookkeeping on top
    bytes_per_item: float
    recall: float  # recall@k against exact search with the requested metric
    p50_ms: float  # single-query latency through VectorIndex.search
    p99_ms: float
    raw_p50_ms: float  # the same queries on the FAISS object directly
    raw_p99_ms: float
    add: str
    remove: str
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def overhead_ratio(self) -> float:
        """Wrapper p50 / FAISS p50."""
        return self.p50_ms / self.raw_p50_ms if self.raw_p50_ms > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["overhead_ratio"] = self.overhead_ratio
        return out


def exact_topk(
    items: npt.NDArray[np.float32],
    queries: npt.NDArray[np.float32],
    k: int,
    *,
    metric: str = "dot",
    batch: int = 16,
) -> npt.NDArray[np.int64]:
    """Row indices of the exact top-``k`` items per query (numpy brute force, batched).

    >>> exact_topk(np.eye(3, dtype=np.float32), np.array([[0.2, 0.9, 0.5]], np.float32), 2)
    array([[1, 2]])
    """
    if metric == "cosine":
        items, queries = normalize_rows(items), normalize_rows(queries)
    kk = min(k, len(items))
    out = np.empty((len(queries), kk), dtype=np.int64)
    for s in range(0, len(queries), batch):
        scores = queries[s : s + batch] @ items.T
        part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
        out[s : s + batch] = np.take_along_axis(part, order, axis=1)
    return out


def _percentiles(samples: list[float]) -> tuple[float, float]:
    arr = np.asarray(samples) * 1e3
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 99))


def benchmark_indexes(
    item_vectors: npt.ArrayLike,
    query_vectors: npt.ArrayLike,
    *,
    kinds: Iterable[str] = ("exact", "hnsw", "ivfpq", "lsh"),
    k: int = 100,
    metric: str = "dot",
    params: Mapping[str, Mapping[str, Any]] | None = None,
    n_latency: int = 200,
    warmup: int = 10,
    threads: int = 1,
    build_threads: int | None = None,
    truth: npt.NDArray[np.int64] | None = None,
    log: Callable[[str], None] | None = None,
) -> list[IndexBenchRow]:
    """Build and measure each index kind on ``item_vectors`` (``n x d``) with
    ``query_vectors`` (``q x d``).

    ``params`` maps a kind to its keyword arguments (e.g. ``{"hnsw": {"M": 32}}``).
    Recall@k is measured on all queries (one batch search) against ``truth`` (row indices of
    the exact top-k; computed by numpy brute force when not given). Latency: the first
    ``n_latency`` queries one at a time, after ``warmup`` untimed ones, ``threads`` FAISS
    threads. A kind that does not support ``metric`` (``lsh`` with ``dot``) is built with
    ``cosine`` and still scored against the ``dot`` truth, which shows what it would cost.

    >>> rng = np.random.default_rng(0)
    >>> x, q = rng.standard_normal((500, 8)), rng.standard_normal((20, 8))
    >>> rows = benchmark_indexes(x, q, kinds=["exact", "hnsw"], k=10, n_latency=5)
    >>> [(r.kind, r.recall, r.remove) for r in rows]
    [('exact', 1.0, 'native'), ('hnsw', 1.0, 'tombstone + compact()')]
    """
    items = np.ascontiguousarray(np.asarray(item_vectors), dtype=np.float32)
    queries = np.ascontiguousarray(np.asarray(query_vectors), dtype=np.float32)
    if items.ndim != 2 or queries.ndim != 2 or items.shape[1] != queries.shape[1]:
        raise DataError(
            f"need 2-D item and query arrays of equal dimension, got {items.shape} and "
            f"{queries.shape}"
        )
    if len(items) == 0 or len(queries) == 0:
        raise DataError("need at least one item vector and one query vector")
    if metric not in METRICS:
        raise ConfigError(f"metric must be one of {list(METRICS)}, got {metric!r}")
    if k <= 0:
        raise ConfigError(f"k must be positive, got {k}")
    kinds = [kd.strip().lower() for kd in kinds]
    for kd in kinds:
        index_class(kd)  # unknown kinds fail before any work
    params = params or {}
    say = log or (lambda _msg: None)
    kk = min(k, len(items))
    if truth is None:
        say(f"exact top-{kk} for {len(queries)} queries (numpy)")
        truth = exact_topk(items, queries, kk, metric=metric)
    ids = np.arange(len(items)).astype(str)
    lat_q = queries[: max(1, min(n_latency, len(queries)))]
    rows = []
    for kind in kinds:
        cls = index_class(kind)
        use_metric = metric if metric in cls.metrics else cls.metrics[0]
        note = "" if use_metric == metric else f"{kind} supports {use_metric} only"
        kw = {"threads": threads, "build_threads": build_threads, **params.get(kind, {})}
        say(f"building {kind} ({use_metric}, {kw})")
        index = make_index(kind, metric=use_metric, **kw)
        started = time.perf_counter()
        index.build(items, ids)
        build_s = time.perf_counter() - started
        found, _ = index.search(queries, kk)
        got = np.where(found == None, -1, found).astype(np.int64)  # noqa: E711 (elementwise)
        recall = float(
            np.mean([len(np.intersect1d(g, t)) / kk for g, t in zip(got, truth, strict=True)])
        )
        say(f"timing {kind}: {len(lat_q)} single queries, k={kk}")
        ours, raw = _time_single(index, lat_q, kk, warmup)
        p50, p99 = _percentiles(ours)
        raw50, raw99 = _percentiles(raw)
        structure = index.memory_bytes(include_ids=False)
        rows.append(
            IndexBenchRow(
                kind=kind,
                metric=use_metric,
                params={**index.get_params(), **_resolved(index)},
                n_items=len(items),
                dim=int(items.shape[1]),
                k=kk,
                build_s=build_s,
                memory_bytes=structure,
                id_bytes=index.memory_bytes() - structure,
                bytes_per_item=structure / len(items),
                recall=recall,
                p50_ms=p50,
                p99_ms=p99,
                raw_p50_ms=raw50,
                raw_p99_ms=raw99,
                add="native",
                remove=REMOVAL_TEXT[index.removal],
                note=note,
            )
        )
        del index  # free before building the next kind (1M-item indexes are large)
    return rows


def _resolved(index: Any) -> dict[str, Any]:
    """Parameters chosen at build time (``nlist_``, ``m_``, ``nbits_``)."""
    return {n: getattr(index, n) for n in ("nlist_", "m_", "nbits_") if hasattr(index, n)}


def _time_single(
    index: Any, queries: npt.NDArray[np.float32], k: int, warmup: int
) -> tuple[list[float], list[float]]:
    """Per-query seconds through the wrapper and on the FAISS object, interleaved (the order
    alternates per query) so that drift in machine load hits both sides alike."""
    raw_index = index.faiss_index
    prepared = normalize_rows(queries) if index.metric == "cosine" else queries
    clock = time.perf_counter
    for i in range(min(warmup, len(queries))):
        index.search(queries[i : i + 1], k)
        raw_index.search(prepared[i : i + 1], k)
    ours: list[float] = []
    raw: list[float] = []
    for i in range(len(queries)):
        q, p = queries[i : i + 1], prepared[i : i + 1]
        if i % 2:
            t0 = clock()
            raw_index.search(p, k)
            t1 = clock()
            index.search(q, k)
            t2 = clock()
            raw.append(t1 - t0)
            ours.append(t2 - t1)
        else:
            t0 = clock()
            index.search(q, k)
            t1 = clock()
            raw_index.search(p, k)
            t2 = clock()
            ours.append(t1 - t0)
            raw.append(t2 - t1)
    return ours, raw


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def render_table(rows: Sequence[IndexBenchRow], *, title: str | None = None) -> Table:
    """A rich table of the rows (one per kind)."""
    from rich.table import Table

    if title is None and rows:
        r0 = rows[0]
        title = f"{r0.n_items:,} items × {r0.dim}-d, k={r0.k}, single-query latency"
    table = Table(title=title)
    for name, justify in (
        ("kind", "left"), ("metric", "left"), ("build s", "right"), ("memory", "right"),
        ("B/item", "right"), (f"recall@{rows[0].k if rows else 'k'}", "right"),
        ("p50 ms", "right"), ("p99 ms", "right"), ("FAISS p50", "right"),
        ("overhead", "right"), ("add", "left"), ("remove", "left"), ("note", "left"),
    ):  # fmt: skip
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        table.add_row(
            r.kind, r.metric, f"{r.build_s:.2f}", _fmt_bytes(r.memory_bytes),
            f"{r.bytes_per_item:.0f}", f"{r.recall:.3f}", f"{r.p50_ms:.3f}", f"{r.p99_ms:.3f}",
            f"{r.raw_p50_ms:.3f}", f"{r.overhead_ratio:.2f}×", r.add, r.remove, r.note,
        )  # fmt: skip
    return table


def plot_tradeoff(rows: Sequence[IndexBenchRow], path: str | Path) -> Path:
    """Recall@k against p50 latency (log scale), one point per kind, to a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    try:
        for r in rows:
            ax.scatter(r.p50_ms, r.recall, s=40 + 160 * r.bytes_per_item / max(
                max(x.bytes_per_item for x in rows), 1))  # fmt: skip
            ax.annotate(f"{r.kind}\n{_fmt_bytes(r.memory_bytes)}", (r.p50_ms, r.recall),
                        textcoords="offset points", xytext=(6, -4), fontsize=8)  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlabel("single-query p50 latency (ms, log scale)")
        ax.set_ylabel(f"recall@{rows[0].k if rows else 'k'} vs exact")
        ax.set_ylim(min([0.0] + [r.recall - 0.05 for r in rows]), 1.05)
        if rows:
            ax.set_title(f"{rows[0].n_items:,} items × {rows[0].dim}-d (marker size: memory)")
        ax.grid(True, alpha=0.3)
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.tight_layout()
        fig.savefig(out, dpi=120)
    finally:
        plt.close(fig)
    return out


def available_kinds() -> list[str]:
    """Registered index kinds."""
    return sorted(REGISTRY)


def summarise(rows: Sequence[IndexBenchRow]) -> dict[str, Any]:
    """JSON-ready payload: the rows plus the median wrapper overhead ratio."""
    ratios = [r.overhead_ratio for r in rows if np.isfinite(r.overhead_ratio)]
    return {
        "rows": [r.to_dict() for r in rows],
        "median_overhead_ratio": statistics.median(ratios) if ratios else None,
    }
