"""Property: any ``scorer:pooling[@β]`` text parses into a ScoreSpec or raises a SpillGuardError.

Never a raw ValueError / TypeError / AttributeError / OverflowError; and every spec, once
parsed or built, round-trips through its ``name``.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from spill_guard.errors import SpillGuardError
from spill_guard.scoring.pooling import POOLINGS
from spill_guard.scoring.specs import BASELINES, ENERGY_SCORERS, OTHER_SCORERS, ScoreSpec

FUZZ = settings(max_examples=400, deadline=None)

SCORERS = ENERGY_SCORERS + OTHER_SCORERS
betas_text = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(min_value=1e-300, max_value=1e300).map(lambda b: f"{b:g}"),
    st.integers(-5, 10**400).map(str),
    st.sampled_from(["", " 2 ", "1_0", "0x10", "nan", "-inf", "1e400", "١", "+1", "2@3", "1e-400"]),
    st.text(max_size=8),
)
# Mostly near-valid specs (so the beta and name checks past the split are reached), plus junk.
spec_texts = st.one_of(
    st.builds(lambda s, p, b, at: f"{s}:{p}" + (f"@{b}" if at else ""),
              st.one_of(st.sampled_from(SCORERS), st.text(max_size=6)),
              st.one_of(st.sampled_from(sorted(POOLINGS)), st.text(max_size=6)),
              betas_text, st.booleans()),
    st.sampled_from(sorted(BASELINES)),
    st.text(max_size=40),
    st.text(alphabet=":@.0123456789enal_", max_size=20),
)


@FUZZ
@given(spec_texts)
def test_any_spec_text_parses_or_raises_a_spill_guard_error(text):
    try:
        spec = ScoreSpec.parse(text)
    except SpillGuardError:
        return
    assert isinstance(spec, ScoreSpec)
    assert ScoreSpec.parse(spec.name) == spec  # what was accepted prints back to the same spec


@FUZZ
@given(st.one_of(st.integers(), st.floats(), st.none(), st.lists(st.text(max_size=3), max_size=2),
                 st.binary(max_size=5), st.dictionaries(st.text(max_size=2), st.integers(), max_size=2)))
def test_a_non_text_spec_raises_a_spill_guard_error(value):
    try:
        ScoreSpec.parse(value)
    except SpillGuardError:
        return
    raise AssertionError(f"parse({value!r}) did not refuse a non-text spec")


@FUZZ
@given(st.sampled_from(SCORERS), st.sampled_from(sorted(POOLINGS)),
       st.one_of(st.just(1.0), st.floats(min_value=5e-324, max_value=1e300)))
def test_every_valid_spec_round_trips_through_its_name(scorer, pooling, beta):
    spec = ScoreSpec(scorer, pooling, beta)
    assert ScoreSpec.parse(spec.name) == spec


@FUZZ
@given(st.one_of(st.sampled_from(SCORERS), st.integers(), st.none(), st.lists(st.integers(), max_size=2)),
       st.one_of(st.sampled_from(sorted(POOLINGS)), st.integers(), st.none(), st.lists(st.integers(), max_size=2)),
       st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.booleans(), st.text(max_size=3),
                 st.none()))
def test_building_a_spec_from_any_values_raises_only_spill_guard_errors(scorer, pooling, beta):
    try:
        spec = ScoreSpec(scorer, pooling, beta)
    except SpillGuardError:
        return
    assert ScoreSpec.parse(spec.name) == spec
