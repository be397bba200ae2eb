"""Serving the whole funnel: a saved funnel published to the registry is served through the
same endpoints, with its fallback, stage metrics, served-feature logging and user deletion."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from service_helpers import READ_KEY, WRITE_KEY, R, TestClient, W, train_pop

from recfunnel.core.errors import ConfigError
from recfunnel.core.matrix import InteractionMatrix
from recfunnel.pipeline.feature_log import read_feature_log
from recfunnel.pipeline.funnel import Funnel, FunnelContext
from recfunnel.pipeline.funnel_config import FunnelConfig
from recfunnel.service.funnel_recommender import FunnelRecommender
from recfunnel.service.registry import publish_model

CONFIG: dict[str, Any] = {
    "funnel": {"n": 5},
    "retrieval": {
        "generators": [
            {"model": "itemknn", "quota": 8, "params": {"k": 20}},
            {"model": "pop", "quota": 4},
        ]
    },
    "light": {"model": "lightgbm", "keep": 6,
              "params": {"n_estimators": 15, "min_child_samples": 5, "objective": "lambdarank"}},
    "training": {"labels": "holdout", "random_negatives": 2, "label_fraction": 0.3},
}  # fmt: skip


def _log(seed: int = 0, n_users: int = 60, n_items: int = 40) -> InteractionMatrix:
    """Two taste clusters (even / odd items) with timestamps."""
    rng = np.random.default_rng(seed)
    users, items, ts = [], [], []
    for u in range(n_users):
        pool = np.arange(u % 2, n_items, 2)
        w = 1.0 / (1.0 + np.arange(len(pool)))
        k = int(rng.integers(6, 14))
        chosen = rng.choice(pool, size=k, replace=False, p=w / w.sum())
        users += [f"u{u}"] * k
        items += [f"i{i}" for i in chosen]
        ts += rng.uniform(0, 1e6, k).tolist()
    return InteractionMatrix.from_arrays(users, items, timestamp=ts)


@pytest.fixture(scope="module")
def funnel() -> Funnel:
    return Funnel(FunnelConfig.from_dict(CONFIG, source="test.toml")).fit(_log())


@pytest.fixture
def funnel_registry(tmp_path: Path, funnel: Funnel) -> Path:
    root = tmp_path / "registry"
    publish_model(funnel.save(tmp_path / "saved-funnel"), root, version="f1")
    return root


def test_the_served_funnel_answers_what_the_funnel_computes(
    funnel: Funnel, funnel_registry: Path, make_client: Callable[..., TestClient]
) -> None:
    client = make_client(funnel_registry)
    for user in ("u0", "u1", "u7"):
        r = client.get(f"/v1/users/{user}/recommendations?n=5", headers=R)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model_version"] == "f1"
        want = funnel.recommend([user], 5)[0]
        assert [it["item_id"] for it in body["items"]] == list(want.ids)
        np.testing.assert_allclose([it["score"] for it in body["items"]], want.scores)
    # Unknown user: the funnel's fallback, popular items.
    r = client.get("/v1/users/stranger/recommendations?n=3", headers=R).json()
    assert [it["item_id"] for it in r["items"]] == list(funnel.recommend(["stranger"], 3)[0].ids)
    # Stage timings of the funnel reach /metrics.
    text = client.get("/metrics").text
    for stage in ("funnel_retrieval", "funnel_features", "funnel_light", "funnel_rerank"):
        assert f'recfunnel_stage_duration_seconds_count{{stage="{stage}"}}' in text
    assert 'recfunnel_model_info{model="funnel",version="f1"} 1.0' in text


def test_stored_history_and_exclude_are_never_recommended(
    funnel: Funnel, funnel_registry: Path, make_client: Callable[..., TestClient]
) -> None:
    client = make_client(funnel_registry)
    first = [
        it["item_id"]
        for it in client.get("/v1/users/u0/recommendations", headers=R).json()["items"]
    ]
    event = {"event_id": "e1", "user_id": "u0", "item_id": first[0], "event_type": "click"}
    assert (
        client.post("/v1/interactions", json={"interactions": [event]}, headers=W).status_code
        == 200
    )
    url = f"/v1/users/u0/recommendations?n=5&exclude={first[1]}"
    again = [it["item_id"] for it in client.get(url, headers=R).json()["items"]]
    assert first[0] not in again and first[1] not in again and len(again) == 5
    want = funnel.recommend(["u0"], 5, context=FunnelContext(exclude=[{first[0], first[1]}]))[0]
    assert again == list(want.ids)


def test_served_features_are_logged_under_the_request_id_and_deleted_with_the_user(
    tmp_path: Path, funnel_registry: Path, make_client: Callable[..., TestClient]
) -> None:
    logs = tmp_path / "feature-logs"
    client = make_client(funnel_registry, feature_log_dir=logs, feature_log_sample_rate=1.0)
    ids = {}
    for user in ("u2", "u3"):
        body = client.get(f"/v1/users/{user}/recommendations?n=4", headers=R).json()
        ids[user] = (body["request_id"], [it["item_id"] for it in body["items"]])
    services = client.app.state.services  # type: ignore[attr-defined]
    services.feature_log.flush()
    block, meta = read_feature_log(logs)
    assert len(block) == len(meta) > 0 and "retrieval.itemknn.score" in block.dense_names
    for user, (rid, items) in ids.items():
        rows = meta[meta["request_id"] == rid]
        assert set(rows["user_id"]) == {user} and set(rows["stage"]) == {"light"}
        # Every candidate the light ranker scored (sample rate 1); the served ones flagged.
        assert set(rows.loc[rows["shown"], "item_id"]) == set(items)
        assert (rows["model_versions"] == '{"funnel": "f1"}').all()
    assert client.delete("/v1/users/u2", headers=W).status_code == 200
    _, meta = read_feature_log(logs)
    assert "u2" not in set(meta["user_id"]) and "u3" in set(meta["user_id"])
    # A deleted user gets the fallback from now on.
    r = client.get("/v1/users/u2/recommendations?n=3", headers=R).json()
    assert [it["item_id"] for it in r["items"]] == [
        it["item_id"]
        for it in client.get("/v1/users/nobody/recommendations?n=3", headers=R).json()["items"]
    ]


def test_a_user_deleted_through_another_worker_leaves_no_logged_rows(
    tmp_path: Path, funnel_registry: Path
) -> None:
    """Two apps on one store and one feature-log directory, as two workers of ``serve
    --workers 2``: the deletion reaches one; the other still buffers rows of the user."""
    import time

    from recfunnel.service import ServiceSettings, create_app

    logs = tmp_path / "logs"
    settings = ServiceSettings(
        store_url=f"sqlite:///{tmp_path / 'shared.db'}", model_dir=funnel_registry,
        write_key=WRITE_KEY, read_key=READ_KEY, poll_seconds=None, feature_log_dir=logs,
        feature_log_sample_rate=1.0, feature_log_flush_seconds=3600,
    )  # fmt: skip
    with TestClient(create_app(settings)) as one, TestClient(create_app(settings)) as other:
        theirs = other.app.state.services.feature_log  # type: ignore[attr-defined]

        def serve(client: TestClient, user: str) -> None:
            assert client.get(f"/v1/users/{user}/recommendations?n=3", headers=R).status_code == 200

        for client, user in ((other, "u2"), (other, "u3")):
            serve(client, user)
        theirs.flush()  # u2 in a file the other worker wrote ...
        for client, user in ((other, "u2"), (other, "u5"), (one, "u4")):
            serve(client, user)  # ... and in its buffer
        buffered = theirs.n_buffered
        assert one.delete("/v1/users/u2", headers=W).status_code == 200
        _, meta = read_feature_log(logs)
        assert len(meta) and "u2" not in set(meta["user_id"])  # files: at once
        deadline = time.monotonic() + 10  # the other's buffer: by its feature-log thread
        while theirs.n_buffered == buffered and time.monotonic() < deadline:
            time.sleep(0.05)
        assert 0 < theirs.n_buffered < buffered
        stranger = other.get("/v1/users/nobody/recommendations?n=3", headers=R).json()
        again = other.get("/v1/users/u2/recommendations?n=3", headers=R).json()
        assert again["items"] == stranger["items"]
    _, meta = read_feature_log(logs)  # both flushed at shutdown, into files of their own
    assert set(meta["user_id"]) == {"u3", "u4", "u5"}  # strangers get no light stage
    assert not meta.duplicated(["request_id", "item_id", "stage"]).any()


def test_hot_swap_between_a_single_model_and_a_funnel(
    tmp_path: Path, funnel: Funnel, make_client: Callable[..., TestClient]
) -> None:
    root = tmp_path / "registry"
    publish_model(train_pop().save(tmp_path / "pop"), root, version="v1")
    client = make_client(root)
    assert client.get("/v1/users/a/recommendations", headers=R).json()["model_version"] == "v1"
    publish_model(funnel.save(tmp_path / "f"), root, version="f2")
    assert client.post("/v1/admin/reload", headers=W).json()["model_version"] == "f2"
    body = client.get("/v1/users/u1/recommendations?n=3", headers=R).json()
    assert body["model_version"] == "f2" and len(body["items"]) == 3
    sim = client.get("/v1/items/i0/similar?n=3", headers=R)
    assert sim.status_code == 200 and len(sim.json()["items"]) == 3
    assert client.get("/v1/items/nope/similar", headers=R).status_code == 404


def test_a_funnel_is_published_without_an_index(tmp_path: Path, funnel: Funnel) -> None:
    with pytest.raises(ConfigError, match="funnel"):
        publish_model(funnel.save(tmp_path / "f"), tmp_path / "reg", index="hnsw")


def test_recommender_checks_its_batch(funnel: Funnel) -> None:
    rec = FunnelRecommender(funnel, version="x")
    with pytest.raises(ConfigError, match="history"):
        rec.recommend(["u0", "u1"], 3, history=[[]])
    with pytest.raises(ConfigError, match="positive"):
        rec.recommend(["u0"], 0)


def test_concurrent_requests_get_the_same_answers_as_one_at_a_time(funnel: Funnel) -> None:
    from concurrent.futures import ThreadPoolExecutor

    rec = FunnelRecommender(funnel, version="x")
    users = [f"u{u}" for u in range(60)] + ["stranger"]
    want = {u: rec.recommend([u], 5, history=[["i0"]]) for u in users}
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda u: (u, rec.recommend([u], 5, history=[["i0"]])), users * 4))
    assert all(answer == want[u] for u, answer in got)


def test_only_stages_that_ran_are_timed_and_positions_follow_the_light_scores(
    tmp_path: Path, funnel: Funnel
) -> None:
    from recfunnel.pipeline.feature_log import FeatureLogger

    seen: list[str] = []
    pop_only = Funnel(
        FunnelConfig.from_dict(
            {"funnel": {"n": 3}, "retrieval": {"generators": [{"model": "pop", "quota": 4}]}}
        )
    ).fit(_log())
    FunnelRecommender(pop_only, version="p", observe=lambda s, _t: seen.append(s)).recommend(
        ["u0"], 3
    )
    assert set(seen) == {"funnel_retrieval", "funnel_rerank"}
    with FeatureLogger(tmp_path / "logs", sample_rate=1.0) as log:
        rec = FunnelRecommender(funnel, version="x", feature_log=log)
        rec.recommend(["u4"], 5, request_ids=["r4"])
    _, meta = read_feature_log(tmp_path / "logs")
    assert sorted(meta["position"]) == list(range(len(meta)))
    by_position = meta.sort_values("position")["score"].to_numpy()
    assert (np.diff(by_position) <= 0).all()  # position 0 = best light score


def test_a_saved_funnel_directory_is_versioned_by_all_its_parts(
    tmp_path: Path, funnel: Funnel
) -> None:
    from recfunnel.service.registry import resolve

    other = Funnel(FunnelConfig.from_dict({**CONFIG, "funnel": {"n": 7}})).fit(_log())
    a = resolve(funnel.save(tmp_path / "a"))
    b = resolve(other.save(tmp_path / "b"))
    assert a is not None and b is not None and a[0] != b[0] and a[0].startswith("sha-")


def test_the_feature_log_is_written_while_the_server_runs(
    tmp_path: Path, funnel_registry: Path, make_client: Callable[..., TestClient]
) -> None:
    import time

    logs = tmp_path / "flushed"
    client = make_client(
        funnel_registry, feature_log_dir=logs, feature_log_sample_rate=1.0,
        feature_log_flush_seconds=0.1,
    )  # fmt: skip
    rid = client.get("/v1/users/u5/recommendations?n=3", headers=R).json()["request_id"]
    deadline = time.monotonic() + 10
    while not list(logs.rglob("part-*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.05)
    _, meta = read_feature_log(logs)  # written without a shutdown
    assert set(meta["request_id"]) == {rid}
