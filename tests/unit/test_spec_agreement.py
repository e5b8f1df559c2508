"""The operator's parser refuses every case of the bad-input table the API server refuses,
naming the same field, and accepts what the API server accepts.

The CRD schema and CEL (hack/gen_crd.py) and the Python parser (spec/parse.py) say the
spec's rules twice; the table (tests/bad_input.py) is run through both. This file is the
parser's half; tests/api/test_bad_input.py is the API server's half and checks that the
API server's message names the path the parser names.
"""

from __future__ import annotations

import pytest

from envisolation.spec.model import EnvironmentIsolation, InvalidSpec
from tests.bad_input import CASES, Case, base, field_path


@pytest.mark.parametrize("case", [c for c in CASES if c.expect != "ok"], ids=lambda c: c.id)
def test_the_parser_refuses_what_the_table_refuses_naming_the_field(case: Case) -> None:
    body = base("environment")
    case.mutate(body)
    with pytest.raises(InvalidSpec) as err:
        EnvironmentIsolation.from_body(body)
    path = field_path(str(err.value))
    for name in case.names:
        assert name in str(err.value), f"{name!r} not named in: {err.value}"
    assert path.startswith(case.names[0].split("[")[0]) if case.names else path


@pytest.mark.parametrize("case", [c for c in CASES if c.expect == "ok"], ids=lambda c: c.id)
def test_the_parser_accepts_what_the_table_accepts(case: Case) -> None:
    body = base("environment")
    case.mutate(body)
    assert EnvironmentIsolation.from_body(body).name == body["metadata"]["name"]


def test_a_message_starts_with_the_field_path() -> None:
    assert field_path("spec.allow[0].ingress[0].from[0].segment: unknown") == (
        "spec.allow[0].ingress[0].from[0].segment"
    )
