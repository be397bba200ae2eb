from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from recfunnel.cli.index_cmd import index_bench
from recfunnel.core.errors import ConfigError, DataError
from recfunnel.core.matrix import InteractionMatrix
from recfunnel.index.selection import (
    benchmark_indexes,
    exact_topk,
    plot_tradeoff,
    render_table,
    summarise,
)

D = 16


def clustered(n: int, seed: int) -> npt.NDArray[np.float32]:
    centres = np.random.default_rng(7).standard_normal((12, D))
    rng = np.random.default_rng(seed)
    return (centres[rng.integers(0, 12, n)] + 0.3 * rng.standard_normal((n, D))).astype(np.float32)


ITEMS, QUERIES = clustered(1500, 0), clustered(40, 1)


@pytest.fixture(scope="module")
def rows() -> list[Any]:
    return benchmark_indexes(ITEMS, QUERIES, k=20, metric="dot", n_latency=10, warmup=2)


def test_rows_measure_every_kind(rows: list[Any]) -> None:
    by = {r.kind: r for r in rows}
    assert list(by) == ["exact", "hnsw", "ivfpq", "lsh"]
    assert by["exact"].recall == 1.0
    assert by["hnsw"].recall > 0.9
    assert 0.0 < by["ivfpq"].recall < 1.0 and 0.0 < by["lsh"].recall < 1.0
    assert by["lsh"].metric == "cosine" and "cosine only" in by["lsh"].note
    assert by["hnsw"].remove == "tombstone + compact()" and by["exact"].remove == "native"
    # Memory ordering: PQ codes < floats < floats + graph.
    assert by["ivfpq"].memory_bytes < by["exact"].memory_bytes < by["hnsw"].memory_bytes
    for r in rows:
        assert r.n_items == 1500 and r.dim == D and r.k == 20
        assert r.build_s > 0 and r.p50_ms > 0 and r.raw_p50_ms > 0 and r.p99_ms >= r.p50_ms
        assert r.id_bytes > 0 and r.bytes_per_item == r.memory_bytes / 1500
    assert by["ivfpq"].params["nlist_"] >= 1 and by["lsh"].params["nbits_"] == 4 * D


def test_table_plot_and_json(rows: list[Any], tmp_path: Path) -> None:
    console = Console(width=160, record=True)
    console.print(render_table(rows))
    text = console.export_text()
    assert "recall@20" in text and "tombstone" in text and "1,500 items" in text
    png = plot_tradeoff(rows, tmp_path / "sub" / "plot.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    payload = json.loads(json.dumps(summarise(rows)))
    assert len(payload["rows"]) == 4 and payload["median_overhead_ratio"] > 0


def test_exact_topk_cosine_and_small_catalogue() -> None:
    items = np.array([[1.0, 0.0], [10.0, 10.0], [0.0, 1.0]], np.float32)
    q = np.array([[1.0, 0.1]], np.float32)
    assert exact_topk(items, q, 2).tolist() == [[1, 0]]
    assert exact_topk(items, q, 2, metric="cosine").tolist() == [[0, 1]]
    assert exact_topk(items, q, 10).shape == (1, 3)


def test_benchmark_input_errors() -> None:
    with pytest.raises(DataError, match="equal dimension"):
        benchmark_indexes(ITEMS, QUERIES[:, :4])
    with pytest.raises(ConfigError, match="unknown index kind"):
        benchmark_indexes(ITEMS, QUERIES, kinds=["exact", "faiss-gpu"])
    with pytest.raises(ConfigError, match="metric"):
        benchmark_indexes(ITEMS, QUERIES, metric="l2")
    with pytest.raises(ConfigError, match="k must be positive"):
        benchmark_indexes(ITEMS, QUERIES, k=0)


# ---- the command ---------------------------------------------------------------------------
def said(out: Any) -> str:
    """The command's output with rich's line wrapping undone."""
    return " ".join(out.output.split())


def cli() -> typer.Typer:
    app = typer.Typer()
    app.command("index-bench")(index_bench)
    app.command("noop")(lambda: None)  # two commands: typer keeps the subcommand name
    return app


def test_cli_on_npy(tmp_path: Path) -> None:
    np.save(tmp_path / "items.npy", ITEMS)
    np.save(tmp_path / "queries.npy", QUERIES[:10])
    out = CliRunner().invoke(
        cli(),
        ["index-bench", "--embeddings", str(tmp_path / "items.npy"), "--queries",
         str(tmp_path / "queries.npy"), "--k", "10", "--kinds", "exact,hnsw", "--output",
         str(tmp_path / "report"), "--n-latency", "5", "--metric", "cosine"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    payload = json.loads((tmp_path / "report" / "index_bench.json").read_text())
    assert [r["kind"] for r in payload["rows"]] == ["exact", "hnsw"]
    assert payload["meta"]["metric"] == "cosine" and payload["meta"]["n_queries"] == 10
    assert (tmp_path / "report" / "index_bench.png").stat().st_size > 0
    assert "hnsw" in out.stdout


def test_cli_errors(tmp_path: Path) -> None:
    np.save(tmp_path / "flat.npy", np.arange(5.0))
    runner = CliRunner()
    base = ["index-bench", "--output", str(tmp_path / "r")]
    out = runner.invoke(cli(), [*base, "--embeddings", str(tmp_path / "flat.npy")])
    assert out.exit_code == 2 and "2-D numeric array" in said(out)
    out = runner.invoke(cli(), [*base, "--embeddings", str(tmp_path / "missing.npy")])
    assert out.exit_code == 2 and "no such file" in said(out)
    np.save(tmp_path / "items.npy", ITEMS)
    out = runner.invoke(
        cli(), [*base, "--embeddings", str(tmp_path / "items.npy"), "--kinds", "bogus"]
    )
    assert out.exit_code == 2 and "unknown index kind" in said(out)


def test_cli_on_model_directories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from recfunnel import candidates

    # A saved generator without vectors is refused with a clear message.
    data = InteractionMatrix.from_arrays(["a", "a", "b"], ["x", "y", "x"])
    candidates.make_generator("pop").fit(data).save(tmp_path / "pop")
    out = CliRunner().invoke(
        cli(), ["index-bench", "--embeddings", str(tmp_path / "pop"), "--output",
                str(tmp_path / "r")],
    )  # fmt: skip
    assert out.exit_code == 2 and "has no user/item vectors" in said(out)

    class Embedding:  # satisfies the EmbeddingModel protocol
        metric = "cosine"
        users_ = range(30)

        def user_vectors(self, users: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
            return QUERIES[users]

        def item_vectors(self) -> npt.NDArray[np.float32]:
            return ITEMS

    monkeypatch.setattr(candidates, "load_generator", lambda path: Embedding())
    out = CliRunner().invoke(
        cli(), ["index-bench", "--embeddings", str(tmp_path / "pop"), "--output",
                str(tmp_path / "r2"), "--kinds", "exact,lsh", "--k", "5", "--n-queries", "12",
                "--n-latency", "3"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    meta = json.loads((tmp_path / "r2" / "index_bench.json").read_text())["meta"]
    assert meta["metric"] == "cosine" and meta["queries"] == "12 sampled user vectors"
