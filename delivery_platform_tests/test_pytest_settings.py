"""The suite's own settings (setup.cfg) do what their comments say."""

import importlib
import sys

from _pytest.assertion.rewrite import AssertionRewritingHook


def test_our_tests_are_assertion_rewritten_and_installed_test_modules_are_not():
    # A library's `test_*.py` module imported during a test is compiled by pytest's AST rewriter,
    # which CPython 3.11 does not make thread-safe (gh-106905); only our own test files may be.
    assert isinstance(sys.modules[__name__].__loader__, AssertionRewritingHook)
    loaded = sys.modules.pop("dagster._core.test_utils", None)
    try:
        module = importlib.import_module("dagster._core.test_utils")
        assert not isinstance(module.__loader__, AssertionRewritingHook), module.__file__
    finally:
        if loaded is not None:
            sys.modules["dagster._core.test_utils"] = loaded
