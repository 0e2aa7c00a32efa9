"""The allocation chooser, without a database."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from proxy.allocation import (
    Holdings,
    PoolNumber,
    allocation_view_from_rows,
    choose_proxy_number,
    holdings_of,
    pool_for_country,
)

US = [PoolNumber(f"1201555020{i}", "US") for i in range(3)]
GB = [PoolNumber("447400000001", "GB")]
NOTHING = Holdings(active=frozenset(), cooling={})


def test_own_country_first_then_the_default_country():
    assert pool_for_country(US + GB, country="GB", default_country="US") == GB
    assert pool_for_country(US + GB, country="FR", default_country="US") == US
    assert pool_for_country(GB, country="FR", default_country="US") == []


def test_never_a_number_the_person_already_holds():
    holdings = Holdings(active=frozenset(n.number for n in US[:2]), cooling={})
    assert choose_proxy_number(candidates=US, holdings=holdings, counterpart="b", sticky=None) == US[2].number


def test_none_when_everything_is_held_or_cooling_with_someone_else():
    holdings = Holdings(active=frozenset({US[0].number}), cooling={US[1].number: "c", US[2].number: "d"})
    assert choose_proxy_number(candidates=US, holdings=holdings, counterpart="b", sticky=None) is None


def test_a_kept_number_wins_over_sticky_when_it_is_free_for_the_person():
    assert (
        choose_proxy_number(candidates=US, holdings=NOTHING, counterpart="b", sticky=US[0].number, keep=US[1].number)
        == US[1].number
    )
    held = Holdings(active=frozenset({US[1].number}), cooling={})
    assert (
        choose_proxy_number(candidates=US, holdings=held, counterpart="b", sticky=US[0].number, keep=US[1].number)
        == US[0].number
    )
    cooling = Holdings(active=frozenset(), cooling={US[1].number: "someone else"})
    assert (
        choose_proxy_number(candidates=US, holdings=cooling, counterpart="b", sticky=None, keep=US[1].number)
        != US[1].number
    )


def test_sticky_number_wins_even_when_cooling_from_the_same_counterpart():
    holdings = Holdings(active=frozenset(), cooling={US[1].number: "b"})
    assert choose_proxy_number(candidates=US, holdings=holdings, counterpart="b", sticky=US[1].number) == US[1].number


def test_sticky_number_cooling_from_someone_else_is_not_reused():
    holdings = Holdings(active=frozenset(), cooling={US[1].number: "c"})
    chosen = choose_proxy_number(candidates=US, holdings=holdings, counterpart="b", sticky=US[1].number)
    assert chosen in {US[0].number, US[2].number}


def test_sticky_number_outside_the_candidates_is_ignored():
    chosen = choose_proxy_number(candidates=US[:1], holdings=NOTHING, counterpart="b", sticky=GB[0].number)
    assert chosen == US[0].number


def test_load_is_spread_over_free_numbers():
    rng = random.Random(7)
    picks = {
        choose_proxy_number(candidates=US, holdings=NOTHING, counterpart="b", sticky=None, rng=rng) for _ in range(60)
    }
    assert picks == {n.number for n in US}


@given(
    held=st.sets(st.sampled_from([n.number for n in US])),
    cooling=st.dictionaries(st.sampled_from([n.number for n in US]), st.sampled_from(["b", "c"])),
    sticky=st.none() | st.sampled_from([n.number for n in US]),
)
def test_choice_is_always_allowed(held, cooling, sticky):
    holdings = Holdings(active=frozenset(held), cooling=cooling)
    chosen = choose_proxy_number(candidates=US, holdings=holdings, counterpart="b", sticky=sticky)
    if chosen is None:
        # every number is held, or cooling without being the allowed sticky one
        assert all(
            n.number in held or (n.number in cooling and not (n.number == sticky and cooling[n.number] == "b"))
            for n in US
        )
    else:
        assert chosen not in held
        assert cooling.get(chosen, "b") == "b"


# --- The allocation read's rows, typed (no database) -----------------------------------------------

CONVERSATION = "5f0c2b1e-7d4e-4c1a-9d55-0a5c0e0f1a2b"


def test_rows_become_held_pairs_sticky_numbers_and_the_pool():
    rows = [
        ("held", "a", "12015550200", True, CONVERSATION, False, "b"),
        # SQLite answers 0/1 for booleans and hex for UUIDs.
        ("held", "a", "12015550201", 0, CONVERSATION.replace("-", ""), 1, "c"),
        ("sticky", "a", "12015550202", None, None, None, None),
        ("pool", "12015550200", "US", None, None, None, None),
    ]
    view = allocation_view_from_rows(rows)
    first, second = view.held
    assert (first.active, first.expired, first.counterpart) == (True, False, "b")
    assert (second.active, second.expired, str(second.conversation_id)) == (False, True, CONVERSATION)
    assert view.sticky == {"a": "12015550202"}
    assert view.pool == [PoolNumber("12015550200", "US")]


def test_holdings_split_active_from_cooling_with_each_counterpart():
    view = allocation_view_from_rows(
        [
            ("held", "a", "12015550200", True, CONVERSATION, False, "b"),
            ("held", "a", "12015550201", False, CONVERSATION, False, "c"),
            ("held", "b", "12015550200", True, CONVERSATION, False, "a"),
        ]
    )
    holdings = holdings_of(reals=["a", "b", "z"], held=view.held)
    assert holdings["a"] == Holdings(active=frozenset({"12015550200"}), cooling={"12015550201": "c"})
    assert holdings["b"] == Holdings(active=frozenset({"12015550200"}), cooling={})
    assert holdings["z"] == NOTHING
    # What the chooser then refuses: a's number cooling with c, for a new conversation with b.
    choice = choose_proxy_number(
        candidates=US[:2], holdings=holdings["a"], counterpart="b", sticky=None, rng=random.Random(0)
    )
    assert choice is None
