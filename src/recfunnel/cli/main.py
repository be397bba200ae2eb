"""The ``recfunnel`` command line: thin commands over the library."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from recfunnel.cli import friends_cmd
from recfunnel.cli.abtest_cmd import abtest_app
from recfunnel.cli.bias_variance_cmd import bias_variance
from recfunnel.cli.drift_cmd import drift
from recfunnel.cli.drift_stream_cmd import drift_stream
from recfunnel.cli.index_cmd import index_bench
from recfunnel.cli.select_cmd import select_features
from recfunnel.cli.serve_cmd import ingest, serve
from recfunnel.core.errors import RecfunnelError

app = typer.Typer(
    help="recfunnel: a recommender-system engine (data, models, evaluation, serving).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
datasets_app = typer.Typer(
    help="Fetch and list real datasets in the local cache.", no_args_is_help=True
)
app.add_typer(datasets_app, name="datasets")

console = Console(stderr=True)
CacheDir = Annotated[
    Path | None,
    typer.Option(
        "--cache-dir",
        envvar="RECFUNNEL_CACHE_DIR",
        help="Dataset cache directory [default: ~/.cache/recfunnel].",
    ),
]


def _fail(exc: Exception) -> None:
    console.print(f"[bold red]error:[/] {exc}", highlight=False)
    raise typer.Exit(code=2)


def _cache(cache_dir: Path | None) -> Path:
    from recfunnel.data.datasets import DEFAULT_CACHE_DIR

    return cache_dir if cache_dir is not None else DEFAULT_CACHE_DIR


def _split_list(value: str, what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise typer.BadParameter(f"give at least one {what}")
    return items


def _parse_value(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _parse_params(
    items: list[str], models: list[str] | None = None
) -> dict[str, dict[str, object]]:
    """``["itemknn.k=50"]`` -> ``{"itemknn": {"k": 50}}``; without models, ``k=50`` is allowed."""
    from recfunnel.core.errors import ConfigError

    out: dict[str, dict[str, object]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--param {item!r}: expected NAME=VALUE")
        model, dot, name = key.rpartition(".")
        if models is not None and (not dot or model not in models):
            raise ConfigError(f"--param {item!r}: expected MODEL.NAME=VALUE with MODEL in {models}")
        out.setdefault(model, {})[name] = _parse_value(value)
    return out


def _load_matrix(
    dataset: str,
    cache_dir: Path | None,
    user_col: str | None,
    item_col: str | None,
    time_col: str | None,
    rating_col: str | None,
    threshold: float | None,
    k_core: int,
) -> tuple[object, object]:
    """Load a dataset by name or path and encode it, with the optional filters."""
    from recfunnel.core.errors import ConfigError
    from recfunnel.core.matrix import InteractionMatrix
    from recfunnel.data.datasets import load
    from recfunnel.data.splits import k_core as apply_k_core
    from recfunnel.data.splits import threshold as apply_threshold

    path = Path(dataset)
    with console.status(f"loading {dataset}"):
        if "://" in dataset:  # an event store: sqlite:///file.db or postgresql://…
            from recfunnel.data.store import open_store

            with open_store(dataset) as store:
                data = store.to_dataset(name=dataset.rsplit("/", 1)[-1])
        elif path.is_file():
            from recfunnel.data.loaders import load_table

            if not user_col or not item_col:
                raise ConfigError("a CSV/Parquet dataset needs --user-col and --item-col")
            data = load_table(
                path, user_col=user_col, item_col=item_col, time_col=time_col,
                rating_col=rating_col,
            )  # fmt: skip
        else:
            data = load(dataset, cache_dir=_cache(cache_dir))
        matrix = InteractionMatrix.from_dataset(data)
    if threshold is not None:
        matrix = apply_threshold(matrix, threshold)
    if k_core > 0:
        matrix = apply_k_core(matrix, user_k=k_core, item_k=k_core)
    return data, matrix


@datasets_app.command("fetch")
def datasets_fetch(
    name: Annotated[str, typer.Argument(help="ml-100k or ml-1m")],
    source: Annotated[
        Path | None,
        typer.Option(help="A GroupLens archive (.zip) or extracted directory to use instead."),
    ] = None,
    cache_dir: CacheDir = None,
    force: Annotated[bool, typer.Option(help="Fetch again even if cached.")] = False,
) -> None:
    """Put a MovieLens dataset (GroupLens) in the local cache."""
    from recfunnel.data.datasets import fetch

    try:
        path = fetch(name, source=source, cache_dir=_cache(cache_dir), force=force, progress=True)
    except (RecfunnelError, OSError) as exc:
        _fail(exc)
    console.print(f"{name}: ready in {path}")


@datasets_app.command("list")
def datasets_list(cache_dir: CacheDir = None) -> None:
    """List cached datasets."""
    root = _cache(cache_dir)
    found = sorted(p.parent.name for p in root.glob("*/manifest.json")) if root.exists() else []
    for name in found:
        typer.echo(name)
    if not found:
        console.print(f"no datasets cached in {root}; run `recfunnel datasets fetch ml-100k`")


@app.command()
def evaluate(
    dataset: Annotated[
        str,
        typer.Option(
            help="A cached dataset name (ml-100k, ml-1m), a directory of RecBole atomic files, "
            "or a CSV/Parquet interactions file (with --user-col/--item-col)."
        ),
    ] = "ml-100k",
    split: Annotated[
        str, typer.Option(help="ro:TRAIN,VALID,TEST | temporal:TRAIN,VALID,TEST | loo:K")
    ] = "ro:0.8,0.1,0.1",
    seed: Annotated[int, typer.Option(help="Seed of the split.")] = 2020,
    models: Annotated[str, typer.Option(help="Comma-separated model names.")] = "pop,itemknn",
    k: Annotated[str, typer.Option("--k", help="Comma-separated cutoffs.")] = "10,20",
    output: Annotated[Path | None, typer.Option(help="Write the JSON report here.")] = None,
    plot: Annotated[Path | None, typer.Option(help="Write a metric@k plot (PNG) here.")] = None,
    user_col: Annotated[str | None, typer.Option(help="User column of a CSV/Parquet file.")] = None,
    item_col: Annotated[str | None, typer.Option(help="Item column of a CSV/Parquet file.")] = None,
    time_col: Annotated[str | None, typer.Option(help="Timestamp column (optional).")] = None,
    rating_col: Annotated[str | None, typer.Option(help="Rating column (optional).")] = None,
    threshold: Annotated[
        float | None, typer.Option(help="Keep interactions with value >= this as positives.")
    ] = None,
    k_core: Annotated[
        int, typer.Option(help="Keep the k-core (users and items with >= k interactions).")
    ] = 0,
    ties: Annotated[str, typer.Option(help="index | trec | optimistic | pessimistic")] = "index",
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the 95% CIs.")] = 1000,
    tune: Annotated[
        int,
        typer.Option(help="Bayesian-optimisation trials per model on the validation split."),
    ] = 0,
    param: Annotated[
        list[str] | None,
        typer.Option(help="A model parameter, MODEL.NAME=VALUE (repeatable), e.g. itemknn.k=50"),
    ] = None,
    pipeline: Annotated[
        Path | None,
        typer.Option(help="A funnel TOML (configs/funnel.toml): also report it as model 'funnel'."),
    ] = None,
    task: Annotated[
        str,
        typer.Option(
            help="recommendation (items to users) | link-prediction (friend suggestions on a "
            "temporal split of the social graph; --dataset synthetic-social[:N], aarhus-cs, a "
            "store URL or an edges file)"
        ),
    ] = "recommendation",
    max_users: Annotated[
        int | None, typer.Option(help="Link prediction: evaluate a sample of this many users.")
    ] = None,
    community: Annotated[
        str, typer.Option(help="Link prediction: the user attribute that defines communities.")
    ] = "community",
    cache_dir: CacheDir = None,
) -> None:
    """Fit models on the train split and evaluate them by full ranking on the test split."""
    from recfunnel.core.errors import ConfigError
    from recfunnel.pipeline.experiment import run_experiment

    if task not in ("recommendation", "link-prediction"):
        _fail(ConfigError(f"--task must be recommendation or link-prediction, got {task!r}"))
    if task == "link-prediction":
        try:
            cutoffs = [int(x) for x in _split_list(k, "cutoff")]
            names = _split_list(
                friends_cmd.DEFAULT_MODELS if models == "pop,itemknn" else models,
                "model",
            )
            friends_cmd.run(
                dataset="synthetic-social" if dataset == "ml-100k" else dataset,
                split="temporal:0.2" if split == "ro:0.8,0.1,0.1" else split,
                seed=seed,
                models=",".join(names),
                cutoffs=cutoffs,
                model_params=_parse_params(param or [], names),
                bootstrap=bootstrap,
                output=output,
                plot=plot,
                cache_dir=cache_dir,
                max_users=max_users,
                community=community,
            )
        except (RecfunnelError, OSError, ValueError) as exc:
            _fail(exc if isinstance(exc, RecfunnelError | OSError) else ConfigError(str(exc)))
        return

    try:
        cutoffs = [int(x) for x in _split_list(k, "cutoff")]
        if min(cutoffs) <= 0:
            raise ConfigError(f"--k: cutoffs must be positive, got {k}")
    except ValueError as exc:
        _fail(exc if isinstance(exc, RecfunnelError) else ConfigError(f"--k: {exc}"))
    try:
        model_names = _split_list(models, "model")
        model_params = _parse_params(param or [], model_names)
        data, matrix = _load_matrix(
            dataset, cache_dir, user_col, item_col, time_col, rating_col, threshold, k_core
        )
        report = run_experiment(
            matrix,
            dataset=dataset,
            models=model_names,
            model_params=model_params,
            tune_trials=tune,
            split=split,
            seed=seed,
            ks=cutoffs,
            ties=ties,  # type: ignore[arg-type]
            n_bootstrap=bootstrap,
            user_features=data.users,
            item_features=data.items,
            progress=True,
        )
        if pipeline is not None:
            from recfunnel.pipeline.funnel_config import load_funnel_config
            from recfunnel.pipeline.funnel_eval import add_funnel_to_report

            config = load_funnel_config(pipeline)
            add_funnel_to_report(
                report,
                matrix,
                config,
                split=split,
                seed=seed,
                ks=cutoffs,
                ties=ties,  # type: ignore[arg-type]
            )
        payload = report.to_dict()
    except (RecfunnelError, OSError) as exc:
        _fail(exc)
    out = Console()
    # A terminal keeps its own width; a file or pipe gets room for every column.
    (out if out.is_terminal else Console(width=220)).print(report.render_table(payload))
    for cmp in payload["comparisons"]:
        lo, hi = cmp["ci95"]
        typer.echo(
            f"{cmp['b']} - {cmp['a']} on {cmp['metric']}: {cmp['difference']:+.4f} "
            f"[{lo:+.4f}, {hi:+.4f}], paired t p={cmp['p_value_t']:.3g}, "
            f"Wilcoxon p={cmp['p_value_wilcoxon']:.3g}"
        )
    if output is not None:
        report.write_json(output, payload)
        console.print(f"report: {output}")
    if plot is not None:
        report.plot(plot)
        console.print(f"plot: {plot}")


@app.command()
def train(
    dataset: Annotated[str, typer.Option(help="Dataset name or path, as for evaluate.")],
    model: Annotated[
        str | None, typer.Option(help="Model name, e.g. itemknn (or give --pipeline).")
    ] = None,
    pipeline: Annotated[
        Path | None,
        typer.Option(
            help="A funnel configuration (e.g. configs/funnel.toml): train the whole funnel "
            "(retrieval, rankers, re-ranking) instead of one model; the server serves it whole."
        ),
    ] = None,
    output: Annotated[
        Path | None, typer.Option(help="Directory to write the model artefact to.")
    ] = None,
    registry: Annotated[
        Path | None,
        typer.Option(
            help="A model registry directory (what `recfunnel serve --model-dir` reads): "
            "publish the model there as a new version and make it current."
        ),
    ] = None,
    index: Annotated[
        str | None,
        typer.Option(help="With --registry: also build this vector index (e.g. hnsw)."),
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option(help="A model parameter NAME=VALUE (repeatable).")
    ] = None,
    valid_fraction: Annotated[
        float,
        typer.Option(help="Per-user share held out for early stopping (models that use it)."),
    ] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed of the validation hold-out.")] = 2020,
    user_col: Annotated[str | None, typer.Option(help="User column of a CSV/Parquet file.")] = None,
    item_col: Annotated[str | None, typer.Option(help="Item column of a CSV/Parquet file.")] = None,
    time_col: Annotated[str | None, typer.Option(help="Timestamp column (optional).")] = None,
    rating_col: Annotated[str | None, typer.Option(help="Rating column (optional).")] = None,
    threshold: Annotated[float | None, typer.Option(help="Keep values >= this.")] = None,
    cache_dir: CacheDir = None,
) -> None:
    """Fit a model (or, with --pipeline, the whole funnel) on a whole dataset and save it
    (arrays + JSON manifest), to --output, or as a new version of a --registry that a running
    server hot-swaps to."""
    import tempfile
    import time

    from recfunnel.candidates import make_generator
    from recfunnel.core.errors import ConfigError
    from recfunnel.data.splits import random_split

    try:
        params = _parse_params(param or []).get("", {})
        if (output is None) == (registry is None):
            raise ConfigError("give exactly one of --output DIR and --registry DIR")
        if index is not None and registry is None:
            raise ConfigError("--index needs --registry")
        if not 0.0 <= valid_fraction < 1.0:
            raise ConfigError(f"--valid-fraction must be in [0, 1), got {valid_fraction}")
        if (model is None) == (pipeline is None):
            raise ConfigError("give exactly one of --model NAME and --pipeline FUNNEL.toml")
        if pipeline is not None:
            if index is not None:
                raise ConfigError("--index: a funnel is published as it is (no vector index)")
            if params:
                raise ConfigError("--param sets a model's parameters; a funnel's are in its TOML")
            from recfunnel.pipeline.funnel import Funnel
            from recfunnel.pipeline.funnel_config import load_funnel_config

            funnel_config = load_funnel_config(pipeline)
            if funnel_config.fallback.context_key:
                # Funnel.fit(popular_in_context=...) needs per-context popular lists, which
                # this command does not build: better refused than silently empty.
                raise funnel_config.locate(
                    "fallback.context_key",
                    "`recfunnel train --pipeline` does not build per-context popular lists; "
                    "unset it, or fit the funnel in Python with Funnel.fit(popular_in_context=)",
                )
            trainable: Any = Funnel(funnel_config)
            model = "funnel"
        else:
            trainable = make_generator(model, **params)
        data, matrix = _load_matrix(
            dataset, cache_dir, user_col, item_col, time_col, rating_col, threshold, 0
        )
        valid = None
        train_part = matrix
        if valid_fraction > 0:
            parts = random_split(matrix, (1 - valid_fraction, valid_fraction), seed=seed)
            train_part, valid = parts.train, parts.test
        started = time.perf_counter()
        with console.status(f"training {model} on {len(train_part):,} interactions") as status:
            if pipeline is not None:
                import warnings

                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    trainable.fit(train_part, valid=valid, log=lambda m: status.update(str(m)))
                for w in caught:
                    console.print(f"[yellow]note:[/] {w.message}")
            else:
                trainable.fit(
                    train_part,  # type: ignore[arg-type]
                    valid=valid,  # type: ignore[arg-type]
                    user_features=getattr(data, "users", None),
                    item_features=getattr(data, "items", None),
                )
        if output is not None:
            path = trainable.save(output)
        else:
            from recfunnel.service.registry import publish_model

            assert registry is not None
            registry.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=registry, prefix=".staging-") as tmp:
                version = publish_model(trainable.save(Path(tmp) / "model"), registry, index=index)
            path = registry / "versions" / version
    except (RecfunnelError, OSError, TypeError) as exc:
        _fail(exc)
    console.print(f"{model}: trained in {time.perf_counter() - started:.2f} s, saved to {path}")


@app.command()
def recommend(
    model: Annotated[Path, typer.Option(help="A directory written by `recfunnel train`.")],
    user: Annotated[list[str] | None, typer.Option(help="User id (repeatable).")] = None,
    item: Annotated[
        list[str] | None, typer.Option(help="Item id for similar items (repeatable).")
    ] = None,
    n: Annotated[int, typer.Option("-n", "--n", help="How many to return.")] = 10,
    include_seen: Annotated[bool, typer.Option(help="Do not filter already seen items.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Recommend items for users (or similar items) with a saved model or funnel."""
    from functools import partial

    from recfunnel.candidates import load_generator
    from recfunnel.core.errors import ConfigError

    try:
        if not user and not item:
            raise ConfigError("give --user or --item")
        from recfunnel.service.registry import FUNNEL_FORMAT, read_artifact_manifest

        # Two listers, each mapping ids to one list of (item id, score) pairs per id.
        if read_artifact_manifest(model).get("format") == FUNNEL_FORMAT:
            if include_seen:
                raise ConfigError("--include-seen: a funnel never recommends seen items")
            from recfunnel.pipeline.funnel import Funnel
            from recfunnel.service.funnel_recommender import FunnelRecommender

            served = FunnelRecommender(Funnel.load(model), version="cli")
            for_users = partial(served.recommend, n=n)
            for_items = partial(served.similar_items, n=n)
        else:
            generator = load_generator(model)

            def for_users(ids: list[str]) -> list[list[tuple[str, float]]]:
                lists = generator.recommend(ids, n=n, exclude_seen=not include_seen)
                return [_pairs(r) for r in lists]

            def for_items(ids: list[str]) -> list[list[tuple[str, float]]]:
                return [_pairs(r) for r in generator.similar_items(ids, n=n)]

        out: dict[str, list[dict[str, object]]] = {}
        for key, ids, lister in (("user", user, for_users), ("item", item, for_items)):
            if ids:
                for k, pairs in zip(ids, lister(ids), strict=True):
                    out[f"{key}:{k}"] = [{"item_id": i, "score": s} for i, s in pairs]
    except (RecfunnelError, OSError) as exc:
        _fail(exc)
    if as_json:
        json.dump(out, sys.stdout)
        sys.stdout.write("\n")
        return
    for key, rows in out.items():
        typer.echo(key)
        for rank, row in enumerate(rows, start=1):
            typer.echo(f"  {rank:>3}. {row['item_id']}\t{row['score']:.4f}")


def _pairs(scored: object) -> list[tuple[str, float]]:
    """A ``ScoredList`` as (item id, score) pairs, the service recommenders' shape."""
    return list(zip(scored.ids, scored.scores, strict=True))  # type: ignore[attr-defined]


@app.command()
def metrics(
    qrels: Annotated[Path, typer.Option(help="TREC qrels: query 0 doc relevance")],
    run: Annotated[Path, typer.Option(help="TREC run: query Q0 doc rank score tag")],
    metrics: Annotated[
        str, typer.Option("--metrics", help="Comma-separated, e.g. ndcg@10,map@10,mrr@10")
    ] = "ndcg@10,map@10,recall@10,precision@10,mrr@10,hit@10",
    convention: Annotated[
        str,
        typer.Option(
            help="trec (linear gain, MAP/|R|, as trec_eval) or recbole (binary gain, "
            "MAP/min(k,|R|))"
        ),
    ] = "trec",
    missing: Annotated[
        str, typer.Option(help="Judged queries absent from the run: skip | zero (trec_eval -c)")
    ] = "skip",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    per_query: Annotated[bool, typer.Option(help="Also print per-query values.")] = False,
) -> None:
    """Evaluate an external TREC-style run, like trec_eval or ranx."""
    from recfunnel.core.errors import ConfigError
    from recfunnel.evaluation.metrics import MetricOptions
    from recfunnel.evaluation.trec import evaluate_run, read_qrels, read_run

    try:
        if convention not in ("trec", "recbole"):
            raise ConfigError(f"--convention must be trec or recbole, got {convention!r}")
        opts = MetricOptions.trec() if convention == "trec" else MetricOptions()
        names = [m.lower() for m in _split_list(metrics, "metric")]
        result = evaluate_run(
            read_qrels(qrels), read_run(run), names, options=opts, missing=missing
        )
    except (RecfunnelError, OSError) as exc:
        _fail(exc)
    means = result.mean()
    if as_json:
        doc: dict[str, object] = dict(means)
        if per_query:
            doc = {
                "mean": means,
                "per_query": {
                    q: {m: float(v[i]) for m, v in result.per_query.items()}
                    for i, q in enumerate(result.queries)
                },
            }
        json.dump(doc, sys.stdout)
        sys.stdout.write("\n")
        return
    if per_query:
        for i, q in enumerate(result.queries):
            for m, v in result.per_query.items():
                typer.echo(f"{m}\t{q}\t{v[i]:.4f}")
    for m, v in means.items():
        typer.echo(f"{m}\tall\t{v:.4f}")


# Operating and index commands live in their own modules; registered here, after the core
# commands, so that ``--help`` lists the main workflow first.
app.command("serve")(serve)
app.command("ingest")(ingest)
app.command("index-bench")(index_bench)
app.command("drift")(drift)
app.command("drift-stream")(drift_stream)
app.add_typer(abtest_app, name="abtest")
app.command("bias-variance")(bias_variance)
app.command("select-features")(select_features)
app.command("train-friends")(friends_cmd.train_friends)
app.command("synth-social-graph")(friends_cmd.synth_social_graph)


if __name__ == "__main__":  # pragma: no cover
    app()
