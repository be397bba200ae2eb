"""``recfunnel evaluate --task link-prediction``: friend suggestions on a temporal edge split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from recfunnel.core.errors import ConfigError, DataError, RecfunnelError
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
    community: str = "community",
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
    model_params = {k: dict(v) for k, v in model_params.items()}
    model_params.setdefault("community_popular", {}).setdefault("column", community)
    model_params.setdefault("friend_funnel", {}).setdefault("community_column", community)
    model_params = {k: v for k, v in model_params.items() if k in names}
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
    out = Console()
    if not out.is_terminal:  # a file or pipe gets room for every column
        out = Console(width=220)
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


def _console() -> Console:
    return Console(stderr=True)


def _fail(exc: Exception) -> None:
    _console().print(f"[red]error:[/red] {exc}", highlight=False)
    raise typer.Exit(code=2)


def synth_social_graph(
    store: Annotated[str, typer.Option(help="The store whose users get a graph (URL).")],
    community: Annotated[
        str, typer.Option(help="User attribute the friendships are homophilous on.")
    ] = "occupation",
    avg_degree: Annotated[float, typer.Option(help="Mean number of friends.")] = 10.0,
    homophily: Annotated[float, typer.Option(help="Share of friends in the same group.")] = 0.8,
    triadic_closure: Annotated[
        float, typer.Option(help="Share of friendships that close a wedge.")
    ] = 0.3,
    seed: Annotated[int, typer.Option(help="Seed of the draw.")] = 0,
) -> None:
    """Draw a seeded SYNTHETIC social graph over the users already in a store and add it.

    For data sets that have no social graph (MovieLens): power-law degrees, homophily on a
    real user attribute, triadic closure, timestamps. The edges are synthetic; say so
    wherever you report results on them."""
    import numpy as np
    import pandas as pd

    from recfunnel.data.store import open_store
    from recfunnel.data.synthetic import draw_social_graph

    try:
        st = open_store(store)
        try:
            users = st.users_frame()
            if len(users) < 3:
                raise ConfigError(f"{store}: {len(users)} users; ingest users first")
            if community not in users.columns:
                raise ConfigError(
                    f"--community {community!r} is not a user attribute; have "
                    f"{sorted(c for c in users.columns if c != 'user_id')}"
                )
            codes = pd.factorize(users[community].astype("string"))[0].astype(np.int64)
            codes[codes < 0] = codes.max() + 1
            edges, _ = draw_social_graph(
                np.random.default_rng(seed),
                users["user_id"].astype(str).tolist(),
                codes,
                avg_degree=avg_degree,
                homophily=homophily,
                triadic_closure=triadic_closure,
                progress=True,
            )
            rows = edges.to_dict("records")
            added = 0
            for lo in range(0, len(rows), 50_000):
                added += st.add_edges(rows[lo : lo + 50_000])
        finally:
            st.close()
    except (RecfunnelError, OSError) as exc:
        _fail(exc)
    typer.echo(
        f"added {added} synthetic edge rows ({len(edges) // 2} friendships) over "
        f"{len(users)} users, homophilous on {community!r}"
    )


def train_friends(
    dataset: Annotated[
        str, typer.Option(help="synthetic-social[:N], aarhus-cs, a store URL or an edges file.")
    ],
    output: Annotated[Path, typer.Option(help="Directory to write the friend funnel to.")],
    param: Annotated[
        list[str] | None,
        typer.Option(help="A funnel parameter NAME=VALUE (repeatable), e.g. diversity=0.2"),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed (synthetic data, sampling).")] = 0,
    cache_dir: Annotated[Path | None, typer.Option(envvar="RECFUNNEL_CACHE_DIR")] = None,
) -> None:
    """Train the friend funnel (sources + LightGBM ranker) on a whole social graph and save
    it for ``recfunnel serve --friends-model``."""
    import json
    import time

    from recfunnel.core.matrix import InteractionMatrix
    from recfunnel.pipeline.friend_funnel import FriendFunnel

    try:
        params: dict[str, Any] = {}
        for item in param or []:
            key, sep, value = item.partition("=")
            if not sep:
                raise ConfigError(f"--param {item!r}: expected NAME=VALUE")
            try:
                params[key] = json.loads(value)
            except json.JSONDecodeError:
                params[key] = value
        data = load_social_dataset(dataset, cache_dir, seed)
        if data.edges is None or len(data.edges) == 0:
            raise ConfigError(f"--dataset {dataset!r} has no social edges")
        users = data.users["user_id"].astype(str).tolist() if data.users is not None else None
        from recfunnel.core.ids import IdIndex

        ids = None if users is None else IdIndex(
            list(dict.fromkeys(users + data.edges["src_user_id"].astype(str).tolist()
                               + data.edges["dst_user_id"].astype(str).tolist()))
        )  # fmt: skip
        graph = SocialGraph.from_edges(data.edges, users=ids, mutual=dataset != "aarhus-cs")
        interactions = InteractionMatrix.from_dataset(data) if len(data.interactions) else None
        if "sources" not in params:
            params["sources"] = [list(s) for s in TRAIN_SOURCES]
        t0 = time.perf_counter()
        funnel = FriendFunnel(seed=seed, **params).fit(
            graph, user_features=data.users, interactions=interactions
        )
        funnel.save(output)
    except (RecfunnelError, OSError) as exc:
        _fail(exc)
    typer.echo(
        f"trained the friend funnel on {graph!r} in {time.perf_counter() - t0:.1f} s "
        f"({funnel.training_rows_} ranker rows); saved to {output}"
    )


#: Sources of ``train-friends`` by default: the graph proximity and cold-start sources
#: (GraphSAGE is opt-in: --param 'sources=[["graphsage", 100], ...]').
TRAIN_SOURCES: tuple[tuple[str, int], ...] = (
    ("mutual_friends", 100),
    ("adamic_adar", 50),
    ("ppr", 50),
    ("profile_similarity", 30),
    ("community_popular", 20),
    ("co_engagement", 30),
)
