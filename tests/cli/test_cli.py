from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from recfunnel.cli.main import app

runner = CliRunner()


def _write_trec(tmp_path):
    qrels = tmp_path / "qrels.tsv"
    run = tmp_path / "run.tsv"
    qrels.write_text("q1 0 d1 1\nq1 0 d2 0\nq1 0 d3 2\nq2 0 d1 1\nq3 0 d9 1\n")
    run.write_text(
        "q1 Q0 d1 1 0.9 sys\nq1 Q0 d2 2 0.8 sys\nq1 Q0 d3 3 0.7 sys\n"
        "q2 Q0 d2 1 0.5 sys\nq2 Q0 d1 2 0.5 sys\n"
    )
    return qrels, run


def test_metrics_json_matches_trec_eval(tmp_path) -> None:
    pytrec_eval = pytest.importorskip("pytrec_eval")
    qrels, run = _write_trec(tmp_path)
    out = runner.invoke(
        app, ["metrics", "--qrels", str(qrels), "--run", str(run),
              "--metrics", "ndcg@3,map@3,precision@2,mrr@3", "--json"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    ours = json.loads(out.stdout)
    ref = pytrec_eval.RelevanceEvaluator(
        {"q1": {"d1": 1, "d2": 0, "d3": 2}, "q2": {"d1": 1}, "q3": {"d9": 1}},
        {"ndcg_cut_3", "map_cut_3", "P_2", "recip_rank"},
    ).evaluate({"q1": {"d1": 0.9, "d2": 0.8, "d3": 0.7}, "q2": {"d2": 0.5, "d1": 0.5}})
    # q3 is judged but absent from the run: skipped, as trec_eval does by default.
    expect = {
        "ndcg@3": np.mean([ref[q]["ndcg_cut_3"] for q in ref]),
        "map@3": np.mean([ref[q]["map_cut_3"] for q in ref]),
        "precision@2": np.mean([ref[q]["P_2"] for q in ref]),
        "mrr@3": np.mean([ref[q]["recip_rank"] for q in ref]),
    }
    assert ours == pytest.approx(expect, abs=1e-9)


def test_metrics_per_query_and_missing_zero(tmp_path) -> None:
    qrels, run = _write_trec(tmp_path)
    out = runner.invoke(
        app, ["metrics", "--qrels", str(qrels), "--run", str(run), "--metrics", "hit@1",
              "--json", "--per-query", "--missing", "zero"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    # q2: d1 and d2 tie at 0.5; id descending puts d2 first, so no hit at 1.
    assert doc["per_query"] == {"q1": {"hit@1": 1.0}, "q2": {"hit@1": 0.0}, "q3": {"hit@1": 0.0}}
    assert doc["mean"]["hit@1"] == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("q1 0 d1\n", "line 1: expected 4 fields"),
        ("q1 0 d1 1\nq1 0 d2 high\n", "line 2, field relevance: 'high' is not a number"),
        ("", "no data lines"),
    ],
)
def test_metrics_bad_qrels(tmp_path, content: str, message: str) -> None:
    _, run = _write_trec(tmp_path)
    bad = tmp_path / "bad.qrels"
    bad.write_text(content)
    out = runner.invoke(app, ["metrics", "--qrels", str(bad), "--run", str(run)])
    assert out.exit_code == 2
    assert message in " ".join(out.output.split())
    assert "bad.qrels" in out.output.replace("\n", "")


def test_metrics_bad_metric_name(tmp_path) -> None:
    qrels, run = _write_trec(tmp_path)
    out = runner.invoke(
        app, ["metrics", "--qrels", str(qrels), "--run", str(run), "--metrics", "ndcg@0"]
    )
    assert out.exit_code == 2 and "k must be a positive integer" in out.output


def _write_csv(tmp_path):
    rng = np.random.default_rng(0)
    rows = ["user,item,stamp,stars"]
    for n in range(1500):
        rows.append(
            f"u{rng.integers(0, 80)},i{rng.integers(0, 50)},{1000 + n},{rng.integers(1, 6)}"
        )
    path = tmp_path / "log.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_evaluate_csv_writes_report_and_plot(tmp_path) -> None:
    path = _write_csv(tmp_path)
    report = tmp_path / "r.json"
    plot = tmp_path / "r.png"
    out = runner.invoke(
        app, ["evaluate", "--dataset", str(path), "--user-col", "user", "--item-col", "item",
              "--time-col", "stamp", "--rating-col", "stars", "--models", "pop,itemknn",
              "--split", "ro:0.8,0.1,0.1", "--seed", "7", "--output", str(report),
              "--plot", str(plot), "--bootstrap", "200"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    doc = json.loads(report.read_text())
    assert doc["dataset"] == str(path) and doc["seed"] == 7 and doc["split"] == "ro:0.8,0.1,0.1"
    for model in ("pop", "itemknn"):
        entry = doc["models"][model]
        for key in ("ndcg@10", "recall@10", "mrr@10", "hit@10", "precision@10", "map@10"):
            lo, hi = entry["ci95"][key]
            assert lo <= entry["metrics"][key] <= hi
        assert entry["fit_seconds"] >= 0 and entry["eval_seconds"] > 0
    assert doc["comparisons"][0]["a"] == "pop" and doc["comparisons"][0]["b"] == "itemknn"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_bad_inputs_fail_cleanly(tmp_path) -> None:
    path = _write_csv(tmp_path)
    cases = [
        (["--user-col", "nope", "--item-col", "item"], "nope"),
        (["--user-col", "user", "--item-col", "item", "--models", "magic"], "unknown model"),
        (["--user-col", "user", "--item-col", "item", "--k", "0"], "positive"),
        (["--user-col", "user", "--item-col", "item", "--split", "zz:1"], "unknown split"),
        ([], "--user-col"),
    ]
    for extra, message in cases:
        report = tmp_path / "never.json"
        out = runner.invoke(
            app, ["evaluate", "--dataset", str(path), "--output", str(report), *extra]
        )
        assert out.exit_code == 2, (extra, out.output)
        assert message in out.output, (extra, out.output)
        assert not report.exists()


def test_evaluate_unknown_dataset_name(tmp_path) -> None:
    out = runner.invoke(app, ["evaluate", "--dataset", "ml-100k", "--cache-dir", str(tmp_path)])
    assert out.exit_code == 2
    assert "recfunnel datasets fetch ml-100k" in " ".join(out.output.split())


def test_train_then_recommend(tmp_path) -> None:
    path = _write_csv(tmp_path)
    model_dir = tmp_path / "model"
    out = runner.invoke(
        app, ["train", "--model", "itemknn", "--dataset", str(path), "--user-col", "user",
              "--item-col", "item", "--output", str(model_dir), "--param", "k=5"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert json.loads((model_dir / "manifest.json").read_text())["params"]["k"] == 5
    out = runner.invoke(
        app, ["recommend", "--model", str(model_dir), "--user", "u1", "--item", "i3",
              "-n", "4", "--json"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert len(doc["user:u1"]) == 4 and len(doc["item:i3"]) == 4
    assert all(row["item_id"] != "i3" for row in doc["item:i3"])
    from recfunnel.candidates import load_generator

    expected = load_generator(model_dir).recommend(["u1"], n=4)[0].ids
    assert [row["item_id"] for row in doc["user:u1"]] == list(expected)


def test_train_and_recommend_errors(tmp_path) -> None:
    path = _write_csv(tmp_path)
    base = ["--dataset", str(path), "--user-col", "user", "--item-col", "item"]
    out = runner.invoke(
        app, ["train", "--model", "itemknn", *base, "--output", str(tmp_path / "m"),
              "--param", "bogus=1"],
    )  # fmt: skip
    assert out.exit_code == 2 and "no parameter(s) ['bogus']" in out.output
    assert not (tmp_path / "m").exists()
    out = runner.invoke(app, ["recommend", "--model", str(tmp_path / "nowhere"), "--user", "u1"])
    assert out.exit_code == 2 and "manifest.json missing" in out.output
    runner.invoke(app, ["train", "--model", "pop", *base, "--output", str(tmp_path / "p")])
    out = runner.invoke(app, ["recommend", "--model", str(tmp_path / "p"), "--user", "ghost"])
    assert out.exit_code == 2 and "ghost" in out.output


def test_evaluate_with_tuning_reports_trials(tmp_path) -> None:
    path = _write_csv(tmp_path)
    report = tmp_path / "r.json"
    out = runner.invoke(
        app, ["evaluate", "--dataset", str(path), "--user-col", "user", "--item-col", "item",
              "--models", "itemknn", "--tune", "3", "--bootstrap", "50", "--output", str(report),
              "--param", "itemknn.block_size=16"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    entry = json.loads(report.read_text())["models"]["itemknn"]
    tuning = entry["tuning"]
    assert tuning["n_trials"] == 3 and len(tuning["trials"]) == 3
    assert "validation" in tuning["objective"]
    assert tuning["best_value"] == max(t["value"] for t in tuning["trials"])
    assert entry["params"]["k"] == tuning["best_params"]["k"]
    assert entry["params"]["block_size"] == 16


FUNNEL_TOML = """
[funnel]
n = 5
[[retrieval.generators]]
model = "itemknn"
quota = 10
params = { k = 10 }
[[retrieval.generators]]
model = "pop"
quota = 5
[light]
model = "lightgbm"
keep = 8
params = { n_estimators = 10, min_child_samples = 5, objective = "lambdarank" }
[training]
labels = "holdout"
"""


def test_train_a_funnel_into_a_registry_then_recommend_with_it(tmp_path) -> None:
    path = _write_csv(tmp_path)
    toml = tmp_path / "funnel.toml"
    toml.write_text(FUNNEL_TOML)
    base = ["--dataset", str(path), "--user-col", "user", "--item-col", "item"]
    out = runner.invoke(
        app, ["train", "--pipeline", str(toml), *base, "--registry", str(tmp_path / "reg")]
    )
    assert out.exit_code == 0, out.output
    from recfunnel.pipeline.funnel import Funnel
    from recfunnel.service.registry import current_version

    version_dir = tmp_path / "reg" / "versions" / str(current_version(tmp_path / "reg"))
    out = runner.invoke(
        app, ["recommend", "--model", str(version_dir), "--user", "u1", "--user", "ghost",
              "--item", "i3", "-n", "4", "--json"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    funnel = Funnel.load(version_dir)
    for user in ("u1", "ghost"):  # a user the funnel does not know gets its fallback
        assert [r["item_id"] for r in doc[f"user:{user}"]] == list(
            funnel.recommend([user], 4)[0].ids
        )
    assert len(doc["item:i3"]) == 4 and all(r["item_id"] != "i3" for r in doc["item:i3"])
    # One of --model / --pipeline; a funnel takes no --param and no --index.
    for extra in (["--model", "pop"], ["--param", "k=3"], ["--index", "hnsw"]):
        target = (
            ["--registry", str(tmp_path / "r2")]
            if extra[0] == "--index"
            else ["--output", str(tmp_path / "x")]
        )
        out = runner.invoke(app, ["train", "--pipeline", str(toml), *base, *target, *extra])
        assert out.exit_code == 2, out.output
    assert not (tmp_path / "x").exists() and not (tmp_path / "r2").exists()
    toml.write_text(FUNNEL_TOML + '[fallback]\ncontext_key = "country"\n')
    out = runner.invoke(
        app, ["train", "--pipeline", str(toml), *base, "--output", str(tmp_path / "x")]
    )
    assert out.exit_code == 2 and "fallback.context_key" in out.output
