"""The fast tiers under `make mutate` (hack/mutate): every surviving mutant runs every test
that reaches its function, most of the unit tier for the spec layer, so there, and only
there (mutmut names the mutant in MUTANT_UNDER_TEST), the property and fuzz tests run
after the example tests (a mutant an example test kills is over in a second) and with a
fifth of their examples (never fewer than 20). Fewer examples can only let a mutant
survive, so the score this gives is a lower bound; `make test` runs every example. The
examples are derandomized and no example database is kept, so a verdict does not depend
on luck or on which mutants ran before: two runs of the same code and tests agree."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import settings

SHARE = 5
FLOOR = 20


def _is_property(item: pytest.Item) -> bool:
    return bool(getattr(getattr(item, "obj", None), "is_hypothesis_test", False))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # read here, not at import: mutmut imports this once and sets it in each forked child
    if "__mutmut_" not in os.environ.get("MUTANT_UNDER_TEST", ""):
        return
    items.sort(key=_is_property)  # stable: example tests first, in their order
    for item in items:
        test: Any = getattr(item, "obj", None)
        if not _is_property(item):
            continue
        current = test._hypothesis_internal_use_settings
        fewer = min(current.max_examples, max(FLOOR, current.max_examples // SHARE))
        test._hypothesis_internal_use_settings = settings(
            current, max_examples=fewer, derandomize=True, database=None
        )
