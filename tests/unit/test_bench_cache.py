"""The benchmark's resumable JSONL cache: settings pinned, torn lines survived."""

from __future__ import annotations

import pytest

from spill_guard.errors import InvalidInputError
from spill_guard.evaluation.cache import JsonlCache, content_key
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


@pytest.mark.parametrize("line", ['{"event": "label", "id": [1]}', '[1, 2]', '"text"', '{"key": 7, "value": 1}', '{"key": "a"}'])
def test_cache_line_of_wrong_shape_is_a_clear_error_naming_file_and_line(tmp_path, line):
    path = tmp_path / "c.jsonl"
    JsonlCache(path, {"k": 1}).put_many({"a": 1})
    with path.open("a") as fh:
        fh.write(line + "\n")
    with pytest.raises(InvalidInputError, match=rf"c\.jsonl:3: not a cache entry.*delete the cache"):
        JsonlCache(path, {"k": 1})


@pytest.mark.parametrize("first", [b'["header"]\n', b'"header"\n', b'{"header": [1]}\n', b"\xff\xfe\n", b"{" * 5000 + b"\n"])
def test_cache_header_of_wrong_shape_or_encoding_is_a_clear_error_naming_the_file(tmp_path, first):
    path = tmp_path / "c.jsonl"
    path.write_bytes(first)
    with pytest.raises(InvalidInputError, match=r"c\.jsonl.*not a spill_guard cache"):
        JsonlCache(path, {"k": 1})


def test_cache_entry_line_that_is_not_utf8_is_skipped_like_a_torn_line(tmp_path):
    path = tmp_path / "c.jsonl"
    JsonlCache(path, {"k": 1}).put_many({"a": 1})
    with path.open("ab") as fh:
        fh.write(b'{"key": "b", "value": "\xff"}\n')
    cache = JsonlCache(path, {"k": 1})
    assert "a" in cache and "b" not in cache


def test_malformed_cached_answer_is_a_clear_error_naming_the_file(tmp_path):
    from spill_guard.evaluation.runner import cached_answer

    path = tmp_path / "generations.jsonl"
    JsonlCache(path, {"k": 1}).put_many({"a": {"record": {"answer": "x"}, "seconds": 0.1}, "b": {"seconds": "slow"}})
    cache = JsonlCache(path, {"k": 1})
    for key in ("a", "b"):
        with pytest.raises(InvalidInputError, match=r"generations\.jsonl.*malformed.*delete the cache file"):
            cached_answer(cache, key)


def test_content_key_is_stable_and_sensitive_to_every_element():
    assert content_key([1, 2, 3]) == content_key([1, 2, 3])
    assert len({content_key([1, 2, 3]), content_key([1, 2]), content_key([1, 3, 2]), content_key("123")}) == 4


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
