"""SeededSampling: a per-call generator, pushed only between the last logits processor and the
stopping check of each step (issue 11: seeded sampling was not repeatable across threads)."""

from __future__ import annotations

import threading

import pytest
import torch

from spill_guard.errors import InvalidParameterError
from spill_guard.models.seeding import SeededSampling

PROBS = torch.full((1, 1000), 1e-3)
IDS = torch.zeros(1, 3, dtype=torch.long)


def draws(n=5):
    return [int(torch.multinomial(PROBS, 1)) for _ in range(n)]


def window_draws(seeded, n=5):
    kw = seeded.generate_kwargs({})
    opened, closed = kw["logits_processor"][-1], kw["stopping_criteria"][-1]
    out = []
    for _ in range(n):
        opened(IDS, PROBS)
        out.append(int(torch.multinomial(PROBS, 1)))
        assert closed(IDS, PROBS).tolist() == [False]  # never stops a row
    return out


def test_window_draws_equal_manual_seed_and_leave_the_global_generator_alone():
    torch.manual_seed(7)
    expected = draws()
    torch.manual_seed(123)
    with SeededSampling(7) as seeded:
        got = window_draws(seeded)
    after = draws()  # the global stream continues as if nothing had drawn from it
    torch.manual_seed(123)
    assert got == expected and after == draws()


def test_seeded_windows_in_threads_do_not_share_a_generator():
    results = {}
    start = threading.Barrier(4)

    def run(seed):
        start.wait()
        with SeededSampling(seed) as seeded:
            results[seed] = window_draws(seeded, 50)

    threads = [threading.Thread(target=run, args=(s,)) for s in (1, 2, 1, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    torch.manual_seed(1)
    assert results[1] == draws(50)


def test_an_error_inside_the_window_does_not_leave_the_mode_pushed():
    with pytest.raises(RuntimeError):
        with SeededSampling(5) as seeded:
            seeded.generate_kwargs({})["logits_processor"][-1](IDS, PROBS)
            raise RuntimeError("generation failed between processor and stopping check")
    torch.manual_seed(9)
    expected = draws()
    torch.manual_seed(9)
    assert draws() == expected and not seeded.pushed


def test_existing_processors_and_criteria_are_kept_in_front():
    kw = SeededSampling(1).generate_kwargs({"logits_processor": ["p"], "stopping_criteria": ["c"], "top_p": 0.9})
    assert kw["logits_processor"][0] == "p" and kw["stopping_criteria"][0] == "c" and kw["top_p"] == 0.9


# -- per-row seeds (a second opinion's K samples in one call) ------------------------------------
ROWS = torch.softmax(torch.randn(4, 50, generator=torch.Generator().manual_seed(0)), dim=-1)


def row_window_draws(seeded, probs, n=5):
    kw = seeded.generate_kwargs({})
    opened, closed = kw["logits_processor"][-1], kw["stopping_criteria"][-1]
    out = []
    for _ in range(n):
        opened(IDS, probs)
        out.append(torch.multinomial(probs, 1).squeeze(1).tolist())
        closed(IDS, probs)
    return out


def alone(probs_row, seed, n=5):
    g = torch.Generator().manual_seed(seed)
    return [int(torch.multinomial(probs_row[None], 1, generator=g)) for _ in range(n)]


def test_each_row_draws_what_its_seed_draws_alone_whatever_else_is_in_the_batch():
    seeds = [3, 4, 2**63 - 1, 0]
    with SeededSampling.per_row(seeds) as seeded:
        got = row_window_draws(seeded, ROWS)
    for i, seed in enumerate(seeds):
        assert [step[i] for step in got] == alone(ROWS[i], seed)
    with SeededSampling.per_row([4, 9]) as seeded:  # row 4's draws do not depend on its neighbours
        other = row_window_draws(seeded, ROWS[[1, 2]])
    assert [step[0] for step in other] == [step[1] for step in got]


def test_one_seed_for_every_row_is_the_call_s_seed_and_an_unseeded_row_uses_the_global_stream():
    with SeededSampling.per_row([7, 7]) as shared, SeededSampling(7) as single:
        assert type(shared.mode) is type(single.mode) and shared.mode.seed == single.mode.seed
    torch.manual_seed(5)
    with SeededSampling.per_row([None, 8]) as seeded:
        got = row_window_draws(seeded, ROWS[:2])
    torch.manual_seed(5)
    assert [step[0] for step in got] == alone_global(ROWS[0]) and [step[1] for step in got] == alone(ROWS[1], 8)


def alone_global(probs_row, n=5):
    return [int(torch.multinomial(probs_row[None], 1)) for _ in range(n)]


def test_per_row_seeds_refuse_bad_seeds_a_wrong_row_count_and_other_random_calls():
    with pytest.raises(InvalidParameterError, match=r"seeds\[1\]=-1 is out of range"):
        SeededSampling.per_row([1, -1])
    with pytest.raises(InvalidParameterError, match="at least one row"):
        SeededSampling.per_row([])
    with pytest.raises(InvalidParameterError, match="3 seeds for a sampling step over probabilities of shape"):
        with SeededSampling.per_row([1, 2, 3]) as seeded:
            row_window_draws(seeded, ROWS[:2], n=1)
    with pytest.raises(InvalidParameterError, match="per-row seeds cover sampling by torch.multinomial"):
        with SeededSampling.per_row([1, 2]) as seeded:
            seeded.generate_kwargs({})["logits_processor"][-1](IDS, ROWS)
            torch.rand(3)
    assert not seeded.pushed
