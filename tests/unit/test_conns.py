"""Sets of connections (analysis/conns.py) against the plainest model: a Python set of
(protocol, port) pairs. Every operation must give the model's answer, and every value
must be canonical (sorted, merged ranges), so that equal sets compare equal."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from envisolation.analysis.conns import ALL, MAX_PORT, NONE, PROTOCOLS, Conns, intersect, merge

# Ports near the edges and small ones, so that ranges touch, overlap and abut often.
PORT = st.one_of(st.integers(1, 40), st.integers(MAX_PORT - 3, MAX_PORT))


@st.composite
def conns(draw: st.DrawFn) -> Conns:
    out = NONE
    for _ in range(draw(st.integers(0, 4))):
        proto = draw(st.sampled_from(PROTOCOLS))
        if draw(st.integers(0, 9)) == 0:
            out = out | Conns.of(proto)
            continue
        lo, hi = sorted((draw(PORT), draw(PORT)))
        out = out | Conns.of(proto, lo, hi)
    return out


# Every range edge drawn lies in 1-41 or MAX_PORT-4..MAX_PORT, so the ports between
# behave as one: probing these ports is the whole set, exactly.
PROBES = (*range(1, 42), 1000, *range(MAX_PORT - 4, MAX_PORT + 1))


def model(c: Conns) -> set[tuple[str, int]]:
    return {(p, port) for p, ranges in zip(PROTOCOLS, c.ports, strict=True)
            for port in PROBES if any(lo <= port <= hi for lo, hi in ranges)}  # fmt: skip


def canonical(c: Conns) -> bool:
    return all(
        all(lo <= hi for lo, hi in ranges)
        and all(a[1] + 1 < b[0] for a, b in itertools.pairwise(ranges))
        for ranges in c.ports
    )


@settings(max_examples=300, deadline=None)
@given(conns(), conns())
def test_the_algebra_is_set_algebra(a: Conns, b: Conns) -> None:
    ma, mb = model(a), model(b)
    for got, want in ((a | b, ma | mb), (a & b, ma & mb), (a - b, ma - mb)):
        assert model(got) == want
        assert canonical(got)
    assert (a <= b) == (ma <= mb)
    assert bool(a) == bool(ma)
    assert a.is_all == (len(ma) == 3 * len(PROBES))


def test_merge_joins_overlapping_and_adjacent_ranges_only() -> None:
    assert merge([(3, 8), (1, 5)]) == ((1, 8),)
    assert merge([(1, 5), (2, 3)]) == ((1, 5),)
    assert merge([(1, 2), (3, 4)]) == ((1, 4),)  # adjacent: one range
    assert merge([(1, 2), (4, 5)]) == ((1, 2), (4, 5))  # a gap of one port stays
    assert merge([]) == ()


def test_intersect_walks_both_lists() -> None:
    assert intersect(((1, 10), (20, 30)), ((5, 25),)) == ((5, 10), (20, 25))
    assert intersect(((1, 5),), ((5, 9), (11, 12))) == ((5, 5),)
    assert intersect(((1, 10),), ((1, 10), (12, 14))) == ((1, 10),)
    assert intersect(((1, 3), (5, 9)), ((2, 6), (8, 9))) == ((2, 3), (5, 6), (8, 9))


def test_and_and_sub_keep_protocols_apart() -> None:
    tcp, udp, sctp = Conns.of("TCP", 80), Conns.of("UDP", 80), Conns.of("SCTP", 80)
    assert not (tcp & udp)
    assert not (sctp & tcp)
    assert (tcp | udp) & udp == udp
    assert (sctp | tcp) & sctp == sctp
    assert (tcp | udp | sctp) - udp == tcp | sctp
    # holes before the range do not hide later ones
    assert str(Conns.of("TCP", 10, 20) - (Conns.of("TCP", 1, 2) | Conns.of("TCP", 12, 13))) == (
        "TCP 10-11,14-20"
    )


def test_printed_forms() -> None:
    assert str(NONE) == "No Connections"
    assert str(ALL) == "All Connections"
    assert str(Conns.of("UDP", 53) | Conns.of("TCP", 80, 81) | Conns.of("TCP", 443)) == (
        "TCP 80-81,443,UDP 53"
    )
    assert str(Conns.of("SCTP")) == f"SCTP 1-{MAX_PORT}"
