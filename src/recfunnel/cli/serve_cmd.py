"""``recfunnel serve`` (the HTTP service) and ``recfunnel ingest`` (files into the store).

Registered in ``cli/main.py`` with ``app.command("serve")(serve)`` and
``app.command("ingest")(ingest)``. The API keys come from the environment
(``RECFUNNEL_WRITE_KEY``, ``RECFUNNEL_READ_KEY``), never from the command line, where other
users of the machine could read them in the process list.

``serve --workers N`` (N > 1) runs N worker processes on one port (uvicorn's supervisor: a
funnel pass holds the GIL, so one process uses about one core). The app is built once first,
in a throwaway spawned process (built in the supervisor, the model would stay in its memory),
so a bad store URL, model or setting fails here with the usual message before any worker
starts. The workers get their settings from the environment: the
keys stay in the variables that hold them, the rest is JSON in ``RECFUNNEL_SERVE_SETTINGS``
(read by :func:`worker_app`, the factory uvicorn calls in each worker). A worker whose app
fails to build anyway exits with uvicorn's startup-failure code, which stops the server
instead of starting another worker; its message is passed back through a file, and ``serve``
exits with it. The workers share the store (served request ids, the deletion log), the
registry (each polls it), the feature-log directory and, through ``PROMETHEUS_MULTIPROC_DIR``,
a fresh metrics directory that is removed at exit.

``ingest`` checks every row with the models the API uses (:mod:`recfunnel.service.schemas`),
so a file and ``POST /v1/…`` accept exactly the same rows. The whole file is checked before
anything is written; an error names the file, the line and the field. Rows are then written
in batches (one transaction each); rows with an ``event_id`` already stored are skipped, so
re-running a file whose rows carry ids is safe (rows without one get a fresh random id).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console

from recfunnel.core.errors import ConfigError, DataError, RecfunnelError

if TYPE_CHECKING:
    from recfunnel.service.settings import ServiceSettings

console = Console(stderr=True)

#: ``--kind`` → (the API's row model, the store method).
KINDS = {
    "interactions": ("InteractionIn", "add_interactions"),
    "users": ("UserIn", "upsert_users"),
    "items": ("ItemIn", "upsert_items"),
    "edges": ("EdgeIn", "add_edges"),
}
#: CSV cells holding numbers (converted when they look like one) and JSON objects.
_NUMERIC = frozenset(("value", "timestamp", "created_at", "expires_at"))
_JSON = frozenset(("context", "attributes"))
#: The workers' settings without the keys (JSON), and where they report a failed start.
SETTINGS_ENV = "RECFUNNEL_SERVE_SETTINGS"
STARTUP_FAILURE_FILE = "startup-failure.txt"


def _fail(exc: Exception) -> NoReturn:
    console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def serve(
    store: Annotated[str, typer.Option(help="Event store URL: sqlite:///FILE or postgresql://…")],
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    model_dir: Annotated[
        Path | None,
        typer.Option(help="A model registry (versions/ + CURRENT) or one saved model."),
    ] = None,
    poll_seconds: Annotated[
        float, typer.Option(help="Check the registry for a new version this often; 0: never.")
    ] = 2.0,
    max_body_bytes: Annotated[int, typer.Option(help="Largest request body accepted.")] = (
        4 * 1024 * 1024
    ),
    history_limit: Annotated[
        int, typer.Option(help="Stored events read per recommendation request (0: none).")
    ] = 200,
    friends_model: Annotated[
        Path | None,
        typer.Option(
            help="A saved friend funnel (recfunnel train-friends); default: mutual "
            "friends with popular fallbacks."
        ),
    ] = None,
    feature_log_dir: Annotated[
        Path | None,
        typer.Option(
            help="When serving a funnel: log the features its light stage scored, per request "
            "id, to date-partitioned Parquet here (for training rankers from served features)."
        ),
    ] = None,
    feature_log_sample_rate: Annotated[
        float,
        typer.Option(help="Share of the candidates not shown that the feature log keeps."),
    ] = 0.01,
    feature_log_flush_seconds: Annotated[
        float, typer.Option(help="Write the feature log's buffered rows this often.")
    ] = 30.0,
    log_level: Annotated[str, typer.Option(help="critical|error|warning|info|debug")] = "info",
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Worker processes (about one per core): each loads the model and serves "
            "requests; they share the store, the registry, the feature log and /metrics.",
        ),
    ] = 1,
) -> None:
    """Serve the HTTP API (keys from RECFUNNEL_WRITE_KEY and RECFUNNEL_READ_KEY)."""
    import uvicorn

    from recfunnel.service.app import create_app
    from recfunnel.service.settings import ServiceSettings

    try:
        if workers > 1 and not poll_seconds:
            raise ConfigError(
                "--workers > 1 needs --poll-seconds > 0: POST /v1/admin/reload reaches one "
                "worker, the pollers bring every worker to a new version"
            )
        settings = ServiceSettings.from_environment(
            os.environ,
            store_url=store,
            model_dir=model_dir,
            friends_model_dir=friends_model,
            poll_seconds=poll_seconds or None,
            max_body_bytes=max_body_bytes,
            history_limit=history_limit,
            feature_log_dir=feature_log_dir,
            feature_log_sample_rate=feature_log_sample_rate,
            feature_log_flush_seconds=feature_log_flush_seconds,
            workers=workers,
        )
        if workers == 1:
            app = create_app(settings)
        else:
            # A check that each worker will start (they build their own apps), made in a
            # throwaway process: built here, the model would stay in the supervisor's memory.
            problem = _probe_in_child(settings)
            if problem is not None:
                raise ConfigError(problem)
    except ValidationError as exc:
        _fail(ConfigError(_settings_error(exc)))
    except (RecfunnelError, OSError) as exc:
        _fail(exc)
    base = f"http://{host}:{port}"
    # The keys stay in the environment: the examples name the variables, never the values.
    console.print(
        f"serving {base} (OpenAPI: {base}/docs). Try:\n"
        f"  curl -H \"X-API-Key: $RECFUNNEL_READ_KEY\" '{base}/v1/users/196/recommendations?n=10'\n"
        f"  curl -H \"X-API-Key: $RECFUNNEL_READ_KEY\" '{base}/v1/items/50/similar?n=5'\n"
        f'  curl -H "X-API-Key: $RECFUNNEL_READ_KEY" '
        f"'{base}/v1/users/196/friend-suggestions?n=5'\n"
        f'  curl -X POST -H "X-API-Key: $RECFUNNEL_WRITE_KEY" '
        "-H 'Content-Type: application/json' "
        f'-d \'{{"interactions": [{{"event_id": "demo-1", "user_id": "196", '
        f'"item_id": "50", "event_type": "rating", "value": 5}}]}}\' '
        f"{base}/v1/interactions\n"
        f"  curl {base}/metrics" + (f"\n{workers} worker processes" if workers > 1 else ""),
        highlight=False,
        soft_wrap=True,
    )
    if workers == 1:
        uvicorn.run(
            app, host=host, port=port, log_level=log_level, server_header=False,
            timeout_graceful_shutdown=10,
        )  # fmt: skip
        return
    failure = _serve_workers(settings, workers, host=host, port=port, log_level=log_level)
    if failure is not None:
        _fail(ConfigError(f"a worker failed to start: {failure}"))


def _probe_in_child(settings: ServiceSettings) -> str | None:
    """Build the app once in a spawned process (the keys reach it through the environment,
    like the workers'); its error message, or None when it built."""
    import multiprocessing

    payload = json.dumps(settings.model_dump(mode="json", exclude={"write_key", "read_key"}))
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_probe, args=(payload, send), name="recfunnel-serve-check")
    child.start()
    send.close()
    try:
        message: str | None = receive.recv()
    except EOFError:
        message = f"the start-up check died (exit code {child.exitcode})"
    child.join()
    return message


def _probe(payload: str, send: Any) -> None:
    from recfunnel.service.app import create_app
    from recfunnel.service.settings import ServiceSettings

    message = None
    try:
        app = create_app(ServiceSettings.from_environment(os.environ, **json.loads(payload)))
        app.state.services.store.close()
    except ValidationError as exc:
        message = _settings_error(exc)
    except (RecfunnelError, OSError) as exc:
        message = str(exc)
    except Exception as exc:  # a worker would fail the same way
        message = f"{type(exc).__name__}: {exc}"
    send.send(message)
    send.close()


def _serve_workers(
    settings: ServiceSettings, workers: int, *, host: str, port: int, log_level: str
) -> str | None:
    """Run ``workers`` worker processes until the server stops; the message of a worker that
    failed to start, if one did."""
    import uvicorn

    run_dir = Path(tempfile.mkdtemp(prefix="recfunnel-serve-"))
    metrics_dir = run_dir / "metrics"
    metrics_dir.mkdir()
    shared = settings.model_copy(update={"metrics_dir": metrics_dir})
    payload = {
        "settings": shared.model_dump(mode="json", exclude={"write_key", "read_key"}),
        "run_dir": str(run_dir),
        "supervisor": os.getpid(),
    }
    saved = {k: os.environ.get(k) for k in (SETTINGS_ENV, "PROMETHEUS_MULTIPROC_DIR")}
    os.environ[SETTINGS_ENV] = json.dumps(payload)
    # Read by prometheus_client when a worker imports it: the workers count into this directory.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    try:
        uvicorn.run(
            "recfunnel.cli.serve_cmd:worker_app", factory=True, workers=workers, host=host,
            port=port, log_level=log_level, server_header=False, timeout_graceful_shutdown=10,
        )  # fmt: skip
        failed = run_dir / STARTUP_FAILURE_FILE
        return failed.read_text(encoding="utf-8") if failed.exists() else None
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(run_dir, ignore_errors=True)


def worker_app() -> Any:
    """The app of one worker of ``serve --workers N``: uvicorn calls this factory in each
    worker process. Settings from ``RECFUNNEL_SERVE_SETTINGS`` plus the keys' variables.

    A failure exits with uvicorn's startup-failure code (the supervisor then stops the server
    rather than starting another worker that would fail the same way) after writing the
    message where ``serve`` reads it.
    """
    from uvicorn.config import STARTUP_FAILURE

    from recfunnel.service.app import create_app
    from recfunnel.service.settings import ServiceSettings

    payload = json.loads(os.environ[SETTINGS_ENV])
    _stop_with(int(payload["supervisor"]))
    try:
        settings = ServiceSettings.from_environment(os.environ, **payload["settings"])
        return create_app(settings)
    except Exception as exc:  # whatever it is, another worker would fail the same way
        if isinstance(exc, ValidationError):
            message = _settings_error(exc)
        elif isinstance(exc, RecfunnelError | OSError):
            message = str(exc)
        else:
            message = f"{type(exc).__name__}: {exc}"
        console.print(f"[bold red]error:[/] worker {os.getpid()}: {message}", highlight=False)
        try:
            report = Path(payload["run_dir"]) / STARTUP_FAILURE_FILE
            with report.open("x", encoding="utf-8") as fh:
                fh.write(message)
        except FileExistsError:
            pass  # another worker's message is already there
        sys.exit(STARTUP_FAILURE)


def _stop_with(supervisor: int) -> None:
    """Linux: have the kernel send this worker SIGTERM (a graceful stop) when the supervisor
    dies, even by SIGKILL, rather than leave it serving on as an orphan that holds the port."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != supervisor:  # it died before the request above
        os.kill(os.getpid(), signal.SIGTERM)


def _settings_error(exc: ValidationError) -> str:
    err = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in err["loc"]) or "settings"
    return f"{where}: {str(err['msg']).removeprefix('Value error, ')}"


def _import_dataset(name: str, store: str, cache_dir: Path | None, batch_size: int) -> None:
    from recfunnel.data.datasets import DEFAULT_CACHE_DIR, load
    from recfunnel.data.store import import_dataset, open_store

    try:
        if batch_size < 1:
            raise ConfigError(f"--batch-size must be positive, got {batch_size}")
        data = load(name, cache_dir=cache_dir or DEFAULT_CACHE_DIR)
        with open_store(store) as st:
            totals = import_dataset(
                st, data, source=name, batch_size=max(batch_size, 10_000), progress=True
            )
    except (RecfunnelError, OSError) as exc:
        _fail(exc)
    typer.echo(
        f"{name} into {store}: {totals['users']} users, {totals['items']} items, "
        f"interactions accepted {totals['accepted']}, already present "
        f"{totals['already_present']}"
    )


def ingest(
    file: Annotated[
        Path | None, typer.Argument(help="A .csv or .jsonl file of rows (or use --dataset).")
    ] = None,
    store: Annotated[
        str, typer.Option(help="Event store URL: sqlite:///FILE or postgresql://…")
    ] = "sqlite:///recfunnel.db",
    dataset: Annotated[
        str | None,
        typer.Option(
            help="Import a whole cached dataset (e.g. ml-100k, after `recfunnel datasets "
            "fetch`): users, items and interactions, with event ids '<name>:<row>' so a "
            "re-run adds nothing."
        ),
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option("--cache-dir", envvar="RECFUNNEL_CACHE_DIR", help="Dataset cache."),
    ] = None,
    kind: Annotated[str, typer.Option(help="interactions | users | items | edges")] = (
        "interactions"
    ),
    batch_size: Annotated[int, typer.Option(help="Rows per transaction.")] = 1000,
    file_format: Annotated[
        str | None, typer.Option("--format", help="csv | jsonl [default: from the suffix]")
    ] = None,
) -> None:
    """Load a CSV or JSON-lines file into the store, with the API's validation."""
    from recfunnel.data.store import open_store

    if (file is None) == (dataset is None):
        _fail(ConfigError("give either a FILE or --dataset NAME"))
    if dataset is not None:
        _import_dataset(dataset, store, cache_dir, batch_size)
        return
    assert file is not None
    try:
        if kind not in KINDS:
            raise ConfigError(f"--kind must be one of {sorted(KINDS)}, got {kind!r}")
        if batch_size < 1:
            raise ConfigError(f"--batch-size must be positive, got {batch_size}")
        fmt = _format(file, file_format)
        checked = sum(1 for _ in _validated(file, fmt, kind))  # check everything first
        totals = {"written": 0, "accepted": 0, "already_present": 0}
        with open_store(store) as st:
            write = getattr(st, KINDS[kind][1])
            batch: list[dict[str, Any]] = []
            for row in _validated(file, fmt, kind):
                batch.append(row)
                if len(batch) == batch_size:
                    _count(write(batch), totals)
                    batch = []
            if batch:
                _count(write(batch), totals)
    except (RecfunnelError, OSError, UnicodeDecodeError) as exc:
        _fail(exc)
    if kind == "interactions":
        typer.echo(
            f"{checked} rows from {file}: accepted {totals['accepted']}, "
            f"already present {totals['already_present']}"
        )
    else:
        typer.echo(f"{checked} rows from {file}: written {totals['written']}")


def _count(result: Any, totals: dict[str, int]) -> None:
    if isinstance(result, int):
        totals["written"] += result
    else:
        totals["accepted"] += result.accepted
        totals["already_present"] += result.duplicates


def _format(file: Path, given: str | None) -> str:
    fmt = (given or {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}.get(
        file.suffix.lower(), "")).lower()  # fmt: skip
    if fmt not in ("csv", "jsonl"):
        raise ConfigError(f"{file}: cannot tell the format; pass --format csv or --format jsonl")
    return fmt


def _validated(file: Path, fmt: str, kind: str) -> Iterator[dict[str, Any]]:
    from recfunnel.service import schemas

    model: type[BaseModel] = getattr(schemas, KINDS[kind][0])
    source = str(file)
    rows = _csv_rows(file) if fmt == "csv" else _jsonl_rows(file)
    for line, raw in rows:
        try:
            yield model.model_validate(raw).model_dump(exclude_none=True)
        except ValidationError as exc:
            raise schemas.located_error(exc, source=source, line=line) from None


def _jsonl_rows(file: Path) -> Iterator[tuple[int, Any]]:
    with file.open(encoding="utf-8") as fh:
        for line, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DataError(f"malformed JSON: {exc.msg}", source=str(file), line=line) from None
            if not isinstance(row, dict):
                raise DataError(
                    f"expected a JSON object per line, got {type(row).__name__}",
                    source=str(file), line=line,
                )  # fmt: skip
            yield line, row


def _csv_rows(file: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with file.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        for record in reader:
            line = reader.line_num
            if None in record:
                raise DataError("more cells than header columns", source=str(file), line=line)
            row: dict[str, Any] = {}
            for name, cell in record.items():
                if cell is None or cell == "":
                    continue  # an empty cell is an absent field
                row[name] = _cell(name, cell, str(file), line)
            yield line, row


def _cell(name: str, cell: str, source: str, line: int) -> Any:
    if name in _NUMERIC:
        try:
            return float(cell)
        except ValueError:
            return cell  # an ISO timestamp, or a mistake the model will name
    if name in _JSON:
        try:
            return json.loads(cell)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"must be a JSON object, got malformed JSON ({exc.msg})",
                source=source, line=line, field=name,
            ) from None  # fmt: skip
    return cell
