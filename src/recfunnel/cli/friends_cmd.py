"""``recfunnel evaluate --task link-prediction``: friend suggestions on a temporal edge split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from recfunnel.core.errors import ConfigError, DataError
from recfunnel.core.graph import SocialGraph
from recfunnel.core.schema import Dataset

DEFAULT_MODELS = "popular_users,mutual_friends,adamic_adar,jaccard,ppr,graphsage,friend_funnel"


def load_social_dataset(dataset: str, cache_dir: Path | None, seed: int) -> Dataset:
    """A dataset with social edges: ``synthetic-social[:N_USERS]`` (seeded), ``aarhus-cs``
    (the Aarhus CS multilayer network), a store URL (``sqlite:///…``, ``postgresql://…``), or
    an edges CSV/Parquet file (``src_user_id``, ``dst_user_id``, ``timestamp``)."""
    if dataset.startswith("synthetic-social"):
        from recfunnel.data.synthetic import SyntheticGenerator

        _, _, size = dataset.partition(":")
        try:
            n_users = int(size) if size else 5000
        except ValueError:
            raise ConfigError(f"--dataset {dataset!r}: expected synthetic-social:N_USERS") from None
        if n_users < 50:
            raise ConfigError(f"--dataset {dataset!r}: at least 50 users")
        gen = SyntheticGenerator(
            n_users=n_users,
            n_items=max(200, n_users // 10),
            n_interactions=n_users * 20,
            social=True,
            seed=seed,
            progress=True,
        )
        data = gen.generate()
        data.name = dataset
        return data
    if dataset == "aarhus-cs":
        from recfunnel.data.datasets import load_aarhus_cs

        return load_aarhus_cs(cache_dir=cache_dir)
    if "://" in dataset:
        from recfunnel.data.store import open_store

        store = open_store(dataset)
        try:
            return store.to_dataset(name="store")
        finally:
            store.close()
    path = Path(dataset)
    if not path.exists():
        raise ConfigError(
            f"--dataset {dataset!r}: not synthetic-social[:N], aarhus-cs, a store URL or a file"
        )
    import pandas as pd

    try:
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read edges: {exc}", source=str(path)) from exc
    users = pd.DataFrame(
        {
            "user_id": pd.unique(
                pd.concat(
                    [
                        frame.get("src_user_id", pd.Series(dtype=str)),
                        frame.get("dst_user_id", pd.Series(dtype=str)),
                    ]
                ).astype(str)
            )
        }
    )
    empty = pd.DataFrame(
        {"user_id": [], "item_id": [], "event_type": [], "value": [], "timestamp": []}
    )
    return Dataset(interactions=empty, users=users, edges=frame, name=path.name)


def run(
    *,
    dataset: str,
    split: str,
    seed: int,
    models: str,
    cutoffs: list[int],
    model_params: dict[str, dict[str, Any]],
    bootstrap: int,
    output: Path | None,
    plot: Path | None,
    cache_dir: Path | None,
    max_users: int | None = None,
) -> None:
    """Run the link-prediction experiment and print the warm and new-member tables."""
    from recfunnel.core.matrix import InteractionMatrix
    from recfunnel.pipeline.link_prediction import run_link_prediction

    kind, _, fraction = split.partition(":")
    if kind not in ("temporal", "temporal-edges"):
        raise ConfigError(f"--split {split!r}: link prediction takes temporal[:TEST_FRACTION]")
    try:
        test_fraction = float(fraction) if fraction else 0.2
    except ValueError:
        raise ConfigError(f"--split {split!r}: TEST_FRACTION must be a number") from None
    data = load_social_dataset(dataset, cache_dir, seed)
    if data.edges is None or len(data.edges) == 0:
        raise ConfigError(f"--dataset {dataset!r} has no social edges")
    users = None
    if data.users is not None and len(data.users):
        users = data.users["user_id"].astype(str).tolist()
    graph = SocialGraph.from_edges(
        data.edges, users=users, mutual=dataset != "aarhus-cs", source=f"{dataset} edges"
    )
    interactions = InteractionMatrix.from_dataset(data) if len(data.interactions) else None
    names = [m.strip() for m in models.split(",") if m.strip()]
    reports = run_link_prediction(
        graph,
        names,
        model_params=model_params,
        user_features=data.users,
        interactions=interactions,
        test_fraction=test_fraction,
        ks=cutoffs,
        new_member_edges=(0, 1, 2, 3),
        dataset=dataset,
        seed=seed,
        n_bootstrap=bootstrap,
        max_users=max_users,
        progress=True,
    )
    out = Console(width=max(100, Console().width))
    warm = reports.warm.to_dict()
    out.print(reports.warm.render_table(warm))
    for cmp in warm["comparisons"]:
        lo, hi = cmp["ci95"]
        typer.echo(
            f"{cmp['b']} - {cmp['a']} on {cmp['metric']}: {cmp['difference']:+.4f} "
            f"[{lo:+.4f}, {hi:+.4f}], paired t p={cmp['p_value_t']:.3g}"
        )
    for k, report in reports.new_members.items():
        typer.echo(f"\nnew members given their first {k} edge(s), no retraining:")
        out.print(report.render_table())
    if output is not None:
        from recfunnel.core.ids import write_json_atomic

        write_json_atomic(output, reports.to_dict())
        Console(stderr=True).print(f"report: {output}")
    if plot is not None:
        reports.warm.plot(plot)
        Console(stderr=True).print(f"plot: {plot}")
