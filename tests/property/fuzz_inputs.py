"""Hypothesis strategies shared by the parser property tests: arbitrary JSON, text and bytes."""

from __future__ import annotations

import json

from hypothesis import strategies as st

#: Scalars JSON can hold, including the awkward ones: huge ints, non-finite floats (Python's
#: json writes NaN/Infinity), lone surrogates, control characters.
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**300, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)),
    max_leaves=12,
)

#: Lines that look like JSON but are cut, nested absurdly deep, or carry huge integers.
hostile_json_text = st.one_of(
    st.builds(lambda v, cut: json.dumps(v)[:cut], json_values, st.integers(0, 60)),
    st.integers(1, 3000).map(lambda n: "[" * n + "]" * n),
    st.integers(1, 3000).map(lambda n: '{"a":' * n + "1" + "}" * n),
    st.just("1" * 5000),
    st.text(max_size=60),
)

binary = st.binary(max_size=200)


def replace_at(value, path: list, new):
    """A copy of nested JSON ``value`` with the element at ``path`` (indices/keys) replaced,
    or deleted when ``new`` is the DELETE marker."""
    if not path:
        return new
    head, rest = path[0], path[1:]
    out = dict(value) if isinstance(value, dict) else list(value)
    if rest or new is not DELETE:
        out[head] = replace_at(value[head], rest, new)
    else:
        del out[head]
    return out


def edit_lists(paths: list):
    """1-3 edits ``(path, new value or DELETE)`` at paths drawn from ``paths``."""
    return st.lists(st.tuples(st.sampled_from(paths), st.one_of(st.just(DELETE), json_values)), min_size=1, max_size=3)


def apply_edits(value, edits):
    """``value`` with each edit applied in turn; an edit whose path an earlier one removed or retyped is skipped."""
    for path, new in edits:
        try:
            value = replace_at(value, path, new)
        except (KeyError, IndexError, TypeError):
            continue
    return value


DELETE = object()


def paths_of(value, prefix=()):
    """Every path to a nested element of a JSON value (dict keys, list indices)."""
    yield list(prefix)
    if isinstance(value, dict):
        for k, v in value.items():
            yield from paths_of(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value[:3]):  # the first few list elements stand for the rest
            yield from paths_of(v, (*prefix, i))
