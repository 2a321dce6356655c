"""Fixtures of the security tests: ``private`` (a broker and Redis of their own per module) for
tests that move global state, such as a rebuild switching the live Redis namespace."""

from tests.support.private import private  # noqa: F401 (a fixture)
