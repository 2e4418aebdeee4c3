"""The review studio's small parts on their own: leases, the heatmap's reference scale, reviewer tokens."""

from __future__ import annotations

import threading

import pytest

from spill_guard.errors import InvalidParameterError
from spill_guard.studio import heat
from spill_guard.studio.auth import Reviewers, Sessions, same_token
from spill_guard.studio.leases import LeaseBook


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_lease_keeps_an_item_from_others_until_it_expires_or_is_released():
    clock = Clock()
    book = LeaseBook(60, clock=clock)
    assert book.take_first("alice", ["a", "b", "c"]) == "a"
    assert book.take_first("bob", ["a", "b", "c"]) == "b"
    assert book.take("carol", "a") == "alice"  # held: the holder's name comes back
    assert book.take_first("alice", ["a", "b"]) == "a"  # her own lease counts as hers
    clock.now = 61
    assert book.take_first("carol", ["a", "b"]) == "a"  # alice's lease ran out
    book.release("bob", "b")
    assert book.take_first("alice", ["b"]) == "b"
    assert book.held() == {"a": "carol", "b": "alice"}  # taking b released alice's older lease


def test_concurrent_takes_never_hand_one_item_to_two_reviewers():
    book = LeaseBook(600)
    items = [str(i) for i in range(400)]
    got: dict[str, list[str]] = {}
    barrier = threading.Barrier(8)

    def reviewer(name: str) -> None:
        barrier.wait()
        mine = got.setdefault(name, [])
        for _ in range(50):
            rid = book.take_first(name, items)
            mine.append(rid)
            items.remove(rid) if rid in items else None  # labelled: no longer a candidate

    threads = [threading.Thread(target=reviewer, args=(f"r{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    handed = [rid for ids in got.values() for rid in ids]
    assert len(handed) == len(set(handed)) == 400


def test_lease_length_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        LeaseBook(0)


def test_heat_scales_each_kind_of_token_against_correct_answers_of_that_kind():
    # Correct answers: words carry a high Δ (content words), numbers a low one.
    answers = [([" Paris", " is", " 12"], [5.0 + i / 100, 4.0 + i / 100, 0.1 + i / 1000]) for i in range(50)]
    ref = heat.Reference.from_answers(answers, "50 answers labelled correct")
    cells = heat.cells([" Paris", " 12", " 99", "."], [5.25, 0.125, 3.0, None], {"token_start": 0, "token_end": 1}, ref)
    paris, twelve, odd_number, dot = cells
    cells = cells[:2]  # the answer as the model gave it: " Paris 12"
    # The highest Δ of its answer (an own-range scale paints it deep red), but ordinary for words in correct answers.
    assert paris.value == max(c.value for c in cells if c.value is not None)
    assert paris.band in ("q0", "q1", "q2") and 70 < paris.percentile < 80 and paris.in_span
    assert twelve.band in ("q0", "q1") and not twelve.in_span
    assert odd_number.band == "q4" and odd_number.percentile == 100.0  # a number far above correct numbers is
    assert dot.band == "na" and dot.value is None
    assert heat.token_kind(" 1969") == "number" and heat.token_kind(" Apollo") == "word" and heat.token_kind("!") == "other"


def test_heat_without_a_reference_leaves_tokens_uncoloured():
    empty = heat.Reference.from_answers([], "none")
    assert not empty
    assert [c.band for c in heat.cells(["a", "b"], [1.0, 2.0], None, empty)] == ["na", "na"]


def test_reviewer_tokens_are_named_long_unique_and_parsed_from_a_file(tmp_path):
    file = tmp_path / "reviewers.txt"
    file.write_text("# team\nbob  bob-token-0123456789\ncarol=carol-token-0123456789\n")
    reviewers = Reviewers.parse(["alice=alice-token-0123456789"], [str(file)])
    assert reviewers.name_of("bob-token-0123456789") == "bob"
    assert reviewers.name_of("carol-token-0123456789") == "carol"
    assert reviewers.name_of("nope") is None and not reviewers.open
    with pytest.raises(InvalidParameterError, match="at least 16"):
        Reviewers.parse(["alice=short"], [])
    with pytest.raises(InvalidParameterError, match="share a token"):
        Reviewers.parse(["alice=same-token-0123456789", "bob=same-token-0123456789"], [])
    with pytest.raises(InvalidParameterError, match="not valid"):
        Reviewers.parse(["<b>=alice-token-0123456789"], [])
    with pytest.raises(InvalidParameterError, match="NAME=TOKEN"):
        Reviewers.parse(["alice"], [])
    assert Reviewers().open


def test_sessions_and_csrf_comparison():
    sessions = Sessions(seconds=3600)
    sid, session = sessions.start("alice")
    assert sessions.get(sid) is session and sessions.get("other") is None and sessions.get(None) is None
    assert same_token(session.csrf, session.csrf) and not same_token(None, session.csrf)
    assert not same_token(session.csrf + "x", session.csrf)
    sessions.end(sid)
    assert sessions.get(sid) is None
