"""Fixtures of the fault-injection tests: ``private``, a broker and Redis of their own per test
module (faults are never injected into the session stack, which other tests share)."""

from tests.support.private import private  # noqa: F401 (a fixture)
