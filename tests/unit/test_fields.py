"""The spec's field parsers (spec/fields.py) one by one: what each accepts, at its limits,
and the exact message of each refusal (the path, then what is wrong with the value)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

import pytest

from envisolation.spec import fields as f
from envisolation.spec.model import InvalidSpec, Port
from envisolation.spec.selectors import LabelSelector, Requirement


def refused(call: Callable[[], object]) -> str:
    with pytest.raises(InvalidSpec) as e:
        call()
    return str(e.value)


def test_shapes() -> None:
    assert f.obj({"a": 1}, "p") == {"a": 1}
    assert refused(lambda: f.obj([1], "p")) == "p: must be an object, got list"
    assert f.listed([1], "p") == [1]
    assert refused(lambda: f.listed({"a": 1}, "p")) == "p: must be a list, got dict"
    assert refused(lambda: f.listed((1,), "p")) == "p: must be a list, got tuple"
    assert f.string("", "p") == ""
    assert refused(lambda: f.string(None, "p")) == "p: required"
    assert refused(lambda: f.string(5, "p")) == "p: must be a string, got int"


def test_enum() -> None:
    assert f.enum("Off", "p", ("Enforce", "Off")) == "Off"
    assert refused(lambda: f.enum("off", "p", ("Enforce", "Off"))) == (
        "p: 'off' is not one of Enforce, Off")  # fmt: skip
    assert refused(lambda: f.enum(False, "p", ("Enforce", "Off"))) == (
        'p: got the boolean false; YAML reads an unquoted Off as false, so write "Off" in quotes')  # fmt: skip
    assert refused(lambda: f.enum(True, "p", ("Enforce", "Off"))).startswith(
        "p: got the boolean true;"
    )
    assert refused(lambda: f.enum(False, "p", ("In", "NotIn"))) == "p: must be a string, got bool"


RULE = ", starting and ending with a letter or digit, at most {} characters)"


@pytest.mark.parametrize("good", ["a", "a-b", "0", "a" * 63, "a1-2b"])
def test_dns_labels_accepted(good: str) -> None:
    assert f.dns_label(good, "p") == good


@pytest.mark.parametrize("bad", ["", "A", "-a", "a-", "a_b", "a.b", "a" * 64])
def test_dns_labels_refused(bad: str) -> None:
    assert refused(lambda: f.dns_label(bad, "p")) == (
        f"p: {bad!r} must be a DNS label (lower-case letters, digits and '-'" + RULE.format(63)
    )
    assert refused(lambda: f.dns_label("a" * 11, "p", max_len=10)).endswith(RULE.format(10))
    assert f.dns_label("a" * 10, "p", max_len=10) == "a" * 10


@pytest.mark.parametrize("good", ["a", "A.b-c_d", "x/y", "example.com/name", "a" * 63,
                                  "b" * 253 + "/n", "app.kubernetes.io/managed-by"])  # fmt: skip
def test_label_keys_accepted(good: str) -> None:
    assert f.label_key(good, "p") == good


@pytest.mark.parametrize("bad", ["", "-a", "a-", "a b", "a" * 64, "/a", "Ex.com/a", "x/",
                                 "b" * 254 + "/n", "a/b/c", "-x.com/a"])  # fmt: skip
def test_label_keys_refused(bad: str) -> None:
    assert refused(lambda: f.label_key(bad, "p")) == f"p: {bad!r} is not a valid label key"


def test_selectors() -> None:
    sel = f.parse_selector({"matchLabels": {"b": "2", "a": "1"}, "matchExpressions": [
        {"key": "k", "operator": "In", "values": ["x", "y"]},
        {"key": "e", "operator": "Exists"}]}, "s")  # fmt: skip
    assert sel == LabelSelector((("a", "1"), ("b", "2")),
                                (Requirement("k", "In", ("x", "y")), Requirement("e", "Exists", ())))  # fmt: skip
    assert f.parse_selector({}, "s") == LabelSelector((), ())
    cases: list[tuple[Any, str]] = [
        ([], "s: must be an object, got list"),
        ({"matchLabels": ["x"]}, "s.matchLabels: must be an object, got list"),
        ({"matchExpressions": {"a": 1}}, "s.matchExpressions: must be a list, got dict"),
        ({"matchExpressions": ["x"]}, "s.matchExpressions[0]: must be an object, got str"),
        ({"matchExpressions": [{"key": "k", "operator": "Has"}]},
         "s.matchExpressions[0].operator: 'Has' is not one of In, NotIn, Exists, DoesNotExist"),
        ({"matchExpressions": [{"key": "k", "operator": "NotIn"}]},
         "s.matchExpressions[0].values: must be non-empty for operator NotIn"),
        ({"matchExpressions": [{"key": "k", "operator": "DoesNotExist", "values": ["a"]}]},
         "s.matchExpressions[0].values: must be empty for operator DoesNotExist"),
        ({"matchExpressions": [{"key": "k", "operator": "Exists", "values": ["a"]}]},
         "s.matchExpressions[0].values: must be empty for operator Exists"),
        ({"matchExpressions": [{"key": "k", "operator": "In", "values": "a"}]},
         "s.matchExpressions[0].values: must be a list, got str"),
        ({"matchExpressions": [{"key": "k", "operator": "In", "values": [1]}]},
         "s.matchExpressions[0].values: must be a string, got int"),
        ({"matchExpressions": [{"key": "bad key", "operator": "Exists"}]},
         "s.matchExpressions[0].key: 'bad key' is not a valid label key"),
        ({"matchExpressions": [{"operator": "Exists"}]}, "s.matchExpressions[0].key: required"),
        ({"matchLabels": {"bad key": "v"}}, "s.matchLabels: 'bad key' is not a valid label key"),
        ({"matchLabels": {"k": 1}}, "s.matchLabels.k: must be a string, got int"),
    ]  # fmt: skip
    for raw, message in cases:
        assert refused(lambda raw=raw: f.parse_selector(raw, "s")) == message


def test_ports() -> None:
    assert f.port({}, "p") == Port("TCP", None, None)
    assert f.port({"protocol": "SCTP", "port": 1, "endPort": 65535}, "p") == Port("SCTP", 1, 65535)
    assert f.port({"port": 65535, "endPort": 65535}, "p") == Port("TCP", 65535, 65535)
    assert f.port({"port": "http-2"}, "p") == Port("TCP", "http-2", None)
    cases: list[tuple[Any, str]] = [
        ({"protocol": "tcp"}, "p.protocol: 'tcp' is not one of TCP, UDP, SCTP"),
        ({"port": True}, "p.port: must be a number or a port name"),
        ({"port": 1.0}, "p.port: must be a number or a port name"),
        ({"port": 0}, "p.port: 0 is outside 1-65535"),
        ({"port": 65536}, "p.port: 65536 is outside 1-65535"),
        ({"port": "Http"}, "p.port: 'Http' is not a valid port name"),
        ({"port": "-a"}, "p.port: '-a' is not a valid port name"),
        ({"port": 80, "endPort": "90"}, "p.endPort: must be a number"),
        ({"port": 80, "endPort": False}, "p.endPort: must be a number"),
        ({"endPort": 90}, "p.endPort: needs a numeric port"),
        ({"port": 90, "endPort": 89}, "p.endPort: 89 is less than port 90"),
        ({"port": 90, "endPort": 65536}, "p.endPort: 65536 is outside 1-65535"),
        ([80], "p: must be an object, got list"),
    ]
    for raw, message in cases:
        assert refused(lambda raw=raw: f.port(raw, "p")) == message


def test_cidrs() -> None:
    assert f.cidr("10.1.2.3/8", "c") == ipaddress.ip_network("10.0.0.0/8")
    assert f.cidr("fd00::1/64", "c") == ipaddress.ip_network("fd00::/64")
    assert refused(lambda: f.cidr("10.0.0.0/33", "c")) == (
        "c: '10.0.0.0/33' is not a valid CIDR "
        "('10.0.0.0/33' does not appear to be an IPv4 or IPv6 network)")  # fmt: skip
    assert refused(lambda: f.cidr(None, "c")) == "c: required"
