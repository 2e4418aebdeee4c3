"""The benchmark's resumable JSONL cache: settings pinned, torn lines survived."""

from __future__ import annotations

import pytest

from spill_guard.errors import InvalidInputError
from spill_guard.evaluation.cache import JsonlCache
from spill_guard.evaluation.splits import select, split_of


def test_round_trip_and_resume(tmp_path):
    path = tmp_path / "c.jsonl"
    cache = JsonlCache(path, {"model": "m", "n": 1})
    cache.put_many({"a": {"x": 1}, "b": [1, 2]})
    again = JsonlCache(path, {"model": "m", "n": 1})
    assert len(again) == 2 and again["a"] == {"x": 1} and "b" in again and "c" not in again


def test_other_settings_are_refused_naming_the_difference(tmp_path):
    path = tmp_path / "c.jsonl"
    JsonlCache(path, {"model": "m", "max_new_tokens": 48})
    with pytest.raises(InvalidInputError, match="max_new_tokens"):
        JsonlCache(path, {"model": "m", "max_new_tokens": 24})


def test_torn_last_line_is_dropped_and_later_appends_survive(tmp_path):
    path = tmp_path / "c.jsonl"
    JsonlCache(path, {"k": 1}).put_many({"a": 1})
    with path.open("a") as fh:
        fh.write('{"key": "b", "val')  # a writer killed mid-line
    cache = JsonlCache(path, {"k": 1})
    assert "b" not in cache
    cache.put_many({"c": 3})
    assert JsonlCache(path, {"k": 1})["c"] == 3


def test_split_is_stable_and_balanced():
    class Item:
        def __init__(self, i):
            self.id = f"item-{i}"

    items = [Item(i) for i in range(1000)]
    dev, test = select(items, "dev", None), select(items, "test", None)
    assert len(dev) + len(test) == 1000 and 400 < len(dev) < 600
    assert not {i.id for i in dev} & {i.id for i in test}
    assert [i.id for i in select(items, "dev", 10)] == [i.id for i in dev[:10]]
    assert all(split_of(i.id) == "dev" for i in dev)
