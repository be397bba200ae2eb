"""Property test of the API from its OpenAPI schema (schemathesis): whatever the generated
request (valid or not), the server never answers 5xx, and its answers match the schema.

Bounded: ``MAX_EXAMPLES`` per operation and generation mode, no deadline, derandomized, one
app for the test (< 60 s).
"""

from __future__ import annotations

from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)
from service_helpers import READ_KEY, WRITE_KEY, train_pop

from recfunnel.service import ServiceSettings, create_app
from recfunnel.service.registry import publish_model

#: Examples per operation and mode (14 operations, 2 modes); raise locally for a longer hunt.
MAX_EXAMPLES = 12
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


def test_no_server_errors_on_generated_requests(tmp_path: Path) -> None:
    publish_model(train_pop().save(tmp_path / "m"), tmp_path / "registry", version="v1")
    app = create_app(
        ServiceSettings(
            store_url=f"sqlite:///{tmp_path / 'events.db'}",
            model_dir=tmp_path / "registry",
            write_key=WRITE_KEY,
            read_key=READ_KEY,
            poll_seconds=None,
        )
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 14
    tried = 0
    for operation in operations:
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=MAX_EXAMPLES,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def run(case: schemathesis.Case) -> None:
                nonlocal tried
                tried += 1
                # The write key may call every operation; keys are tested elsewhere.
                case.call_and_validate(headers={"X-API-Key": WRITE_KEY}, checks=CHECKS)

            try:
                run()
            except Unsatisfiable:
                # Nothing to make invalid (GET /health has no parameters): fine.
                assert mode is schemathesis.GenerationMode.NEGATIVE
    app.state.services.store.close()
    assert tried > 100
