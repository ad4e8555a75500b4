"""Schemathesis over the API's own OpenAPI schema, against the API served as deployed (its own process, a real
S3 server, the stages up): requests generated from the schema, valid ones and deliberately invalid ones, for every operation.
None may answer 5xx, and every error is the API's JSON `{"error", "detail"}`.

The fast tier sends a few hundred requests; the long one (`reliability`) at least 2,000.
"""

from __future__ import annotations

from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode

from tests.reliability.hostile_corpus import ApiServer, stage_servers


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """The API with its stages up (so /readyz is 200 and a 503 would be a fault); no worker runs the jobs."""
    with (
        stage_servers() as stages,
        ApiServer(tmp_path_factory.mktemp("schemathesis"), stages=stages) as server,
    ):
        yield server


def _fuzz(api: ApiServer, examples_per_mode: int) -> Counter:
    """Generated requests (positive and negative) through real HTTP; their statuses by class ("2xx", ...)."""
    schema = schemathesis.openapi.from_url(api.url + "/openapi.json")
    statuses: Counter = Counter()
    errors: list[str] = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        _send(api, schema.as_strategy(mode), mode, examples_per_mode, statuses, errors)
    assert errors == [], "\n".join(errors[:20])
    return statuses


def _send(
    api: ApiServer, cases, mode: GenerationMode, examples: int, statuses: Counter, errors: list[str]
) -> None:
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def send(case) -> None:
        response = case.call(base_url=api.url, timeout=60)
        statuses[f"{response.status_code // 100}xx"] += 1
        what = f"{case.method} {case.formatted_path} ({mode.value}) answered {response.status_code}"
        if response.status_code >= 500:
            errors.append(f"{what}: {response.text[:300]}")
        elif response.status_code >= 400 and set(response.json()) != {"error", "detail"}:
            errors.append(f"{what} without the API's error JSON: {response.text[:300]}")

    send()


def test_requests_generated_from_the_schema_never_get_a_5xx(api):
    statuses = _fuzz(api, examples_per_mode=150)
    assert sum(statuses.values()) >= 250
    assert statuses["5xx"] == 0 and statuses["4xx"] > 0, statuses


@pytest.mark.reliability
def test_at_least_2000_requests_generated_from_the_schema_never_get_a_5xx(api):
    statuses = _fuzz(api, examples_per_mode=1100)
    print(f"\nschemathesis: {sum(statuses.values())} requests, {dict(sorted(statuses.items()))}")
    assert sum(statuses.values()) >= 2000
    assert statuses["5xx"] == 0, statuses
