"""SeededSampling: a per-call generator, pushed only between the last logits processor and the
stopping check of each step (issue 11: seeded sampling was not repeatable across threads)."""

from __future__ import annotations

import threading

import pytest
import torch

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
