"""``recfunnel ingest`` (the API's validation on files, located errors) and ``serve``'s
fail-fast start."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from recfunnel.cli.serve_cmd import ingest, serve
from recfunnel.data.store import open_store

app = typer.Typer()
app.command("serve")(serve)
app.command("ingest")(ingest)
runner = CliRunner()


def _store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'events.db'}"


def test_ingest_jsonl_then_rerun_is_idempotent(tmp_path: Path) -> None:
    rows = [
        {"event_id": "e1", "user_id": "u", "item_id": "x", "timestamp": "2024-05-01T00:00:00Z"},
        {"event_id": "e2", "user_id": "u", "item_id": "y", "value": 3, "context": {"d": "m"}},
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    out = runner.invoke(app, ["ingest", str(path), "--store", _store(tmp_path)])
    assert out.exit_code == 0, out.output
    assert out.stdout.strip() == f"2 rows from {path}: accepted 2, already present 0"
    again = runner.invoke(app, ["ingest", str(path), "--store", _store(tmp_path)])
    assert again.stdout.strip().endswith("accepted 0, already present 2")
    with open_store(_store(tmp_path)) as store:
        page = store.user_interactions("u")
    assert [(r.item_id, r.value, r.timestamp, r.context) for r in page.rows] == [
        ("x", 1.0, 1714521600.0, {}),
        ("y", 3.0, None, {"d": "m"}),
    ]


def test_ingest_csv_with_batches_and_typed_cells(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text(
        "event_id,user_id,item_id,value,timestamp,context\n"
        'e1,u,x,4.5,1700000000,"{""device"": ""tv""}"\n'
        "e2,u,y,,2024-01-01T00:00:00,\n"
        "e3,v,x,1,,\n"
    )
    out = runner.invoke(
        app, ["ingest", str(path), "--store", _store(tmp_path), "--batch-size", "2"]
    )
    assert out.exit_code == 0, out.output
    with open_store(_store(tmp_path)) as store:
        rows = store.user_interactions("u").rows
    assert [(r.value, r.timestamp, r.context) for r in rows] == [
        (4.5, 1700000000.0, {"device": "tv"}),
        (1.0, 1704067200.0, {}),
    ]


@pytest.mark.parametrize(
    ("suffix", "content", "where"),
    [
        (".jsonl", '{"user_id": "u", "item_id": "x"}\n{"user_id": "u", "item_id": 5}\n',
         "line 2, field item_id: Input should be a valid string"),
        (".jsonl", '{"user_id": "u", "item_id": "x"}\n{"user_id": "u",\n',
         "line 2: malformed JSON"),
        (".jsonl", '["u", "x"]\n', "line 1: expected a JSON object per line, got list"),
        (".csv", "user_id,item_id,value\nu,x,1\nu,y,lots\n",
         "line 3, field value: Input should be a valid number"),
        (".csv", "user_id,item_id,timestamp\nu,x,yesterday\n",
         "line 2, field timestamp: expected epoch seconds or an ISO 8601 string"),
        (".csv", "user_id,item_id,rating\nu,x,5\n",
         "line 2, field rating: Extra inputs are not permitted"),
        (".csv", 'user_id,item_id,context\nu,x,"{oops"\n',
         "line 2, field context: must be a JSON object, got malformed JSON"),
    ],
)  # fmt: skip
def test_ingest_errors_name_file_line_field_and_write_nothing(
    tmp_path: Path, suffix: str, content: str, where: str
) -> None:
    path = tmp_path / f"bad{suffix}"
    path.write_text(content)
    out = runner.invoke(app, ["ingest", str(path), "--store", _store(tmp_path)])
    assert out.exit_code == 2
    message = " ".join(out.output.split())
    assert f"{path}, {where}" in message
    with open_store(_store(tmp_path)) as store:
        assert store.counts()["interactions"] == 0


def test_ingest_other_kinds(tmp_path: Path) -> None:
    users = tmp_path / "users.jsonl"
    users.write_text('{"user_id": "u", "attributes": {"age": 30}}\n{"user_id": "v"}\n')
    out = runner.invoke(app, ["ingest", str(users), "--store", _store(tmp_path), "--kind", "users"])
    assert out.exit_code == 0 and out.stdout.strip().endswith("written 2")
    bad = runner.invoke(app, ["ingest", str(users), "--store", _store(tmp_path), "--kind", "x"])
    assert bad.exit_code == 2 and "--kind must be one of" in bad.output
    odd = tmp_path / "rows.txt"
    odd.write_text("")
    fmt = runner.invoke(app, ["ingest", str(odd), "--store", _store(tmp_path)])
    assert fmt.exit_code == 2 and "--format" in fmt.output


def test_serve_fails_fast_without_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECFUNNEL_WRITE_KEY", raising=False)
    monkeypatch.setenv("RECFUNNEL_READ_KEY", "r" * 20)
    out = runner.invoke(app, ["serve", "--store", _store(tmp_path)])
    assert out.exit_code == 2 and "set RECFUNNEL_WRITE_KEY in the environment" in out.output
    monkeypatch.setenv("RECFUNNEL_WRITE_KEY", "short")
    out = runner.invoke(app, ["serve", "--store", _store(tmp_path)])
    assert out.exit_code == 2 and "at least 16 characters" in out.output
    assert "short" not in out.output.replace("at least", "")
    monkeypatch.setenv("RECFUNNEL_WRITE_KEY", "w" * 20)
    out = runner.invoke(app, ["serve", "--store", _store(tmp_path), "--model-dir", "/nope"])
    assert out.exit_code == 2 and "no such model directory" in out.output


@pytest.mark.parametrize(
    ("store", "args", "message"),
    [
        ("sqlite:///{tmp}/e.db", ["--poll-seconds", "0"], "--workers > 1 needs --poll-seconds > 0"),
        ("sqlite:///{tmp}/e.db", ["--model-dir", "{tmp}/nope"], "{tmp}/nope: no such model"),
        ("mongodb://localhost/x", [], "no store for URL scheme 'mongodb'"),
        ("sqlite:///{tmp}/no/such/dir/e.db", [], "cannot open SQLite store"),
    ],
)  # fmt: skip
def test_serve_with_workers_fails_before_starting_any(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: str, args: list[str], message: str
) -> None:
    import uvicorn

    def must_not_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("uvicorn started although the app cannot be built")

    monkeypatch.setattr(uvicorn, "run", must_not_run)
    monkeypatch.setenv("RECFUNNEL_WRITE_KEY", "w" * 20)
    monkeypatch.setenv("RECFUNNEL_READ_KEY", "r" * 20)
    tmp = str(tmp_path)
    out = runner.invoke(
        app,
        ["serve", "--store", store.format(tmp=tmp), "--workers", "2",
         *[a.format(tmp=tmp) for a in args]],
    )  # fmt: skip
    assert out.exit_code == 2, out.output
    assert message.format(tmp=tmp) in " ".join(out.output.split())
