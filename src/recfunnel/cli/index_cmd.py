"""``recfunnel index-bench``: measure the vector index kinds on a set of embeddings.

Registered in ``cli/main.py`` with ``app.command("index-bench")(index_bench)``.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Annotated, Any, NoReturn

import numpy as np
import numpy.typing as npt
import typer
from rich.console import Console

from recfunnel.core.errors import ConfigError, DataError, RecfunnelError

console = Console(stderr=True)


def _fail(exc: Exception) -> NoReturn:
    console.print(f"[bold red]error:[/] {exc}", highlight=False)
    raise typer.Exit(code=2)


def _load_npy(path: Path, what: str) -> npt.NDArray[np.float32]:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read a numpy array: {exc}", source=str(path)) from exc
    if not isinstance(arr, np.ndarray) or arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"{what} must be a 2-D numeric array (n x d)", source=str(path))
    return np.ascontiguousarray(arr, dtype=np.float32)


def load_vectors(
    embeddings: Path, queries: Path | None, *, n_queries: int, seed: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], str | None, str]:
    """Item vectors, query vectors, the model's metric (or None) and where queries came from.

    ``embeddings`` is an ``.npy`` array or a saved recfunnel model directory whose model is an
    :class:`~recfunnel.core.generator.EmbeddingModel`. Without ``queries``, a model's user
    vectors are sampled (``n_queries`` users), or for a bare array ``n_queries`` item rows
    (item-to-item queries).
    """
    from recfunnel.core.generator import EmbeddingModel

    rng = np.random.default_rng(seed)
    model_metric: str | None = None
    model: Any = None
    if embeddings.is_dir():
        from recfunnel import candidates

        model = candidates.load_generator(embeddings)
        if not isinstance(model, EmbeddingModel):
            raise ConfigError(
                f"{embeddings}: a {type(model).__name__} model has no user/item vectors; "
                "index-bench needs an embedding model or an .npy array"
            )
        items = np.ascontiguousarray(model.item_vectors(), dtype=np.float32)
        model_metric = model.metric
    elif embeddings.is_file():
        items = _load_npy(embeddings, "embeddings")
    else:
        raise DataError("no such file or model directory", source=str(embeddings))
    if queries is not None:
        qs = _load_npy(queries, "queries")
        origin = str(queries)
    elif model is not None:
        n_users = len(model.users_)
        users = np.sort(rng.choice(n_users, size=min(n_queries, n_users), replace=False))
        qs = np.ascontiguousarray(model.user_vectors(users.astype(np.int64)), dtype=np.float32)
        origin = f"{len(qs)} sampled user vectors"
    else:
        rows = np.sort(rng.choice(len(items), size=min(n_queries, len(items)), replace=False))
        qs = items[rows]
        origin = f"{len(qs)} sampled item vectors (item-to-item)"
    if qs.shape[1] != items.shape[1]:
        raise DataError(f"queries are {qs.shape[1]}-d but embeddings {items.shape[1]}-d")
    return items, qs, model_metric, origin


def index_bench(
    embeddings: Annotated[
        Path,
        typer.Option(
            help="Item vectors (.npy, n x d) or a saved recfunnel model directory whose model "
            "has user/item vectors (an EmbeddingModel)."
        ),
    ],
    output: Annotated[
        Path, typer.Option(help="Directory for index_bench.json and index_bench.png.")
    ],
    queries: Annotated[
        Path | None,
        typer.Option(
            help="Query vectors (.npy, q x d). Default: sampled user vectors of a model, or "
            "sampled item vectors of an array."
        ),
    ] = None,
    k: Annotated[int, typer.Option("--k", help="Neighbours per query (recall@k).")] = 100,
    kinds: Annotated[
        str, typer.Option(help="Comma-separated index kinds.")
    ] = "exact,hnsw,ivfpq,lsh",
    metric: Annotated[
        str | None, typer.Option(help="dot | cosine [default: the model's, else dot].")
    ] = None,
    n_queries: Annotated[
        int, typer.Option(help="Queries sampled when --queries is not given.")
    ] = 200,
    n_latency: Annotated[int, typer.Option(help="Queries timed one at a time.")] = 200,
    threads: Annotated[int, typer.Option(help="FAISS threads for search.")] = 1,
    build_threads: Annotated[
        int | None, typer.Option(help="FAISS threads for building [default: --threads].")
    ] = None,
    hnsw_m: Annotated[int, typer.Option("--hnsw-m", help="HNSW links per node.")] = 32,
    ef_search: Annotated[int, typer.Option(help="HNSW ef_search.")] = 128,
    nprobe: Annotated[int, typer.Option(help="IVF-PQ lists probed.")] = 16,
    seed: Annotated[int, typer.Option(help="Seed of the query sample.")] = 0,
) -> None:
    """Measure index kinds on embeddings: build time, memory, recall@k vs exact, latency."""
    from recfunnel.index.selection import (
        benchmark_indexes,
        plot_tradeoff,
        render_table,
        summarise,
    )

    try:
        if k <= 0:
            raise ConfigError(f"--k must be positive, got {k}")
        names = [s.strip() for s in kinds.split(",") if s.strip()]
        if not names:
            raise ConfigError("--kinds: give at least one index kind")
        items, qs, model_metric, origin = load_vectors(
            embeddings, queries, n_queries=n_queries, seed=seed
        )
        chosen = metric or model_metric or "dot"
        params = {"hnsw": {"M": hnsw_m, "ef_search": ef_search}, "ivfpq": {"nprobe": nprobe}}
        with console.status("benchmarking indexes") as status:
            rows = benchmark_indexes(
                items, qs, kinds=names, k=k, metric=chosen, params=params,
                n_latency=n_latency, threads=threads, build_threads=build_threads,
                log=lambda msg: status.update(msg),
            )  # fmt: skip
        output.mkdir(parents=True, exist_ok=True)
        payload = summarise(rows)
        payload["meta"] = {
            "embeddings": str(embeddings),
            "queries": origin,
            "metric": chosen,
            "n_items": len(items),
            "dim": int(items.shape[1]),
            "n_queries": len(qs),
            "threads": threads,
            "machine": platform.platform(),
        }
        json_path = output / "index_bench.json"
        json_path.write_text(json.dumps(payload, indent=1), encoding="utf-8")
        png_path = plot_tradeoff(rows, output / "index_bench.png")
    except (RecfunnelError, OSError) as exc:
        _fail(exc)
    Console(width=max(140, Console().width)).print(render_table(rows))
    console.print(f"queries: {origin}; report: {json_path}; plot: {png_path}")
