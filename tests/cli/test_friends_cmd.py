"""The friend commands: link-prediction evaluation, a synthetic graph for a store, training."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from recfunnel.cli.main import app
from recfunnel.core.schema import Dataset
from recfunnel.data.store import import_dataset, open_store

runner = CliRunner()


def test_link_prediction_report_has_warm_and_new_member_tables(tmp_path: Path) -> None:
    out = tmp_path / "lp.json"
    result = runner.invoke(
        app,
        ["evaluate", "--task", "link-prediction", "--dataset", "synthetic-social:600",
         "--models", "popular_users,adamic_adar", "--k", "10", "--bootstrap", "50",
         "--output", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    warm = doc["warm"]
    assert set(warm["models"]) == {"popular_users", "adamic_adar"}
    assert warm["protocol"]["task"] == "link-prediction"
    assert {"recall@10", "ndcg@10", "mrr@10"} <= set(warm["models"]["adamic_adar"]["metrics"])
    assert warm["comparisons"][0]["metric"] == "ndcg@10"
    assert "new members given their first 0 edge(s)" in result.output


def test_bad_task_split_and_dataset_are_clear_errors() -> None:
    r = runner.invoke(app, ["evaluate", "--task", "friends"])
    assert r.exit_code != 0 and "--task" in r.output
    r = runner.invoke(app, ["evaluate", "--task", "link-prediction", "--split", "ro:0.8,0.2"])
    assert r.exit_code != 0 and "temporal" in r.output
    r = runner.invoke(app, ["evaluate", "--task", "link-prediction", "--dataset", "nowhere.csv"])
    assert r.exit_code != 0 and "nowhere.csv" in r.output


def test_synthetic_graph_for_a_store_then_train_and_load(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    users = pd.DataFrame(
        {
            "user_id": [f"p{i}" for i in range(300)],
            "occupation": [f"job{i % 5}" for i in range(300)],
        }
    )
    inter = pd.DataFrame(
        {
            "user_id": users["user_id"],
            "item_id": "x",
            "event_type": "view",
            "value": 1.0,
            "timestamp": 0.0,
        }
    )
    store = open_store(url)
    import_dataset(store, Dataset(interactions=inter, users=users), source="t")
    store.close()
    r = runner.invoke(app, ["synth-social-graph", "--store", url, "--community", "occupation"])
    assert r.exit_code == 0, r.output
    assert "synthetic edge rows" in r.output
    store = open_store(url)
    edges = store.to_arrow("edges").to_pandas()
    store.close()
    assert len(edges) == 2 * 300 * 10 // 2  # avg degree 10, both directions
    within = (
        edges["src_user_id"].str[1:].astype(int) % 5 == edges["dst_user_id"].str[1:].astype(int) % 5
    ).mean()
    assert within > 0.6  # homophilous on occupation (0.2 by chance)
    # Running it again adds nothing (same seed, same pairs).
    again = runner.invoke(app, ["synth-social-graph", "--store", url, "--community", "occupation"])
    assert "added 0 " in again.output
    bad = runner.invoke(app, ["synth-social-graph", "--store", url, "--community", "shoe_size"])
    assert bad.exit_code != 0 and "shoe_size" in bad.output

    model = tmp_path / "friends"
    r = runner.invoke(
        app,
        [
            "train-friends",
            "--dataset",
            url,
            "--output",
            str(model),
            "--param",
            "community_column=occupation",
        ],
    )
    assert r.exit_code == 0, r.output
    from recfunnel.core.graph import SocialGraph
    from recfunnel.pipeline.friend_funnel import FriendFunnel

    graph = SocialGraph.from_edges(edges, users=users["user_id"].tolist())
    funnel = FriendFunnel.load(model, graph, user_features=users)
    got = funnel.recommend(["p0"], 5)[0].ids
    assert len(got) == 5 and "p0" not in got
