"""Schemathesis against the notifier's OpenAPI (tests/integration/test_api_fuzz.py covers the
catalog, orders and social services the same way): generated valid and invalid requests get no
5xx, and every answer conforms to the document.

The viewer-token endpoint is called with the service token, every read with a valid viewer token
(so the friend-data paths run too). The SSE streams are left out: their responses never end, which
a request/response fuzzer cannot read; tests/security/test_authorization.py covers the product
stream's inputs, tests/integration/test_notifier_live.py the viewer's own stream's.
"""

from __future__ import annotations

from collections import Counter

import hypothesis
import hypothesis.errors
import pytest
import schemathesis
from schemathesis import GenerationMode

from tests.integration.test_api_fuzz import CHECKS, SETTINGS
from tests.security.test_authorization import mint
from tools.devstack import Stack

pytestmark = pytest.mark.integration

MIN_CASES = 300
EXAMPLES = 40
STREAMS = ["/v1/proof/stream", "/v1/me/stream"]


def fuzz(base_url: str, service_token: str, viewer_token: str) -> Counter[str]:
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    schema = schema.exclude(tag="operations").exclude(path=STREAMS)
    sent: Counter[str] = Counter()
    for result in schema.get_all_operations():
        operation = result.ok()
        token = service_token if operation.method.upper() == "POST" else viewer_token
        headers = {"Authorization": f"Bearer {token}"}
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @hypothesis.settings(max_examples=EXAMPLES, **SETTINGS)
            @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
            def requests_conform(case) -> None:
                sent[case.operation.label] += 1
                case.call_and_validate(headers=headers, checks=CHECKS)  # noqa: B023 (called at once)

            try:
                requests_conform()
            except hypothesis.errors.Unsatisfiable:
                # an operation without parameters or body (GET /widget.js) has no invalid input
                assert mode is GenerationMode.NEGATIVE, operation.label
    return sent


def test_the_notifier_conforms_to_its_openapi(stack: Stack, service_token: str) -> None:
    # Given the notifier's OpenAPI document, When generated requests are sent
    sent = fuzz(stack.url("notifier"), service_token, mint(stack, service_token, "fuzz-viewer"))
    # Then (checked per request above) no 5xx and every answer conforms; enough were sent
    total = sum(sent.values())
    print(f"notifier: {total} generated requests", dict(sent))
    assert total >= MIN_CASES, f"only {total} generated requests: {dict(sent)}"
