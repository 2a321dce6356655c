"""Property-based tests of the catalog, orders and social APIs from their own OpenAPI documents.

Schemathesis generates requests from each service's ``/openapi.json`` (valid ones and, for the
validation paths, invalid ones) and sends them to the real processes of the session stack, with
the service token. Every answer must be a non-5xx, with a status code, content type, headers and
body the document declares, and invalid input must be refused with a 4xx. At least
``MIN_CASES`` requests per service are sent (checked by the test).

(The requests are drawn with Hypothesis from each operation's strategy rather than with
``schemathesis.pytest.from_fixture``, whose lazy loading does not work with pytest 9.)
"""

from __future__ import annotations

from collections import Counter

import hypothesis
import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tools.devstack import Stack

MIN_CASES = 300
#: examples per operation and generation mode; operations differ in number per service
EXAMPLES = {"catalog": 35, "orders": 45, "social": 13}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


SETTINGS = dict(
    deadline=None,
    database=None,
    # the same cases on every run: `make test` stays reproducible
    derandomize=True,
    suppress_health_check=list(hypothesis.HealthCheck),
)


@pytest.mark.parametrize("service", ["catalog", "orders", "social"])
def test_the_api_conforms_to_its_openapi(stack: Stack, service_token: str, service: str) -> None:
    # Given the service's OpenAPI document, without the shared /healthz, /readyz and /metrics
    schema = schemathesis.openapi.from_url(f"{stack.url(service)}/openapi.json")
    schema = schema.exclude(tag="operations")
    headers = {"Authorization": f"Bearer {service_token}"}
    sent: Counter[str] = Counter()
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @hypothesis.settings(max_examples=EXAMPLES[service], **SETTINGS)
            @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
            def requests_conform(case) -> None:
                sent[case.operation.label] += 1
                # When a generated request is sent (with the service token)
                # Then the answer is no 5xx, conforms to the document, and bad input is a 4xx
                case.call_and_validate(headers=headers, checks=CHECKS)

            requests_conform()
    total = sum(sent.values())
    print(f"{service}: {total} generated requests", dict(sent))
    assert total >= MIN_CASES, f"only {total} generated requests: {dict(sent)}"
