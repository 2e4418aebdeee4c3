"""Synthetic arithmetic questions, graded from easy to hard, generated from a seed.

The paper evaluates spilled energy on synthetic arithmetic; this module makes a comparable
set without any data download. Each level draws operands uniformly from its digit ranges,
with a private ``random.Random(f"{seed}:{level}")`` so that adding a level or changing one
level's size never changes the items of another. Questions read "What is 37 + 48?", with
ASCII operators (``+ - *``) because small models have seen those far more than ``×``.

Levels (``meta["difficulty"]`` 1..6):

1. one-digit addition              ``7 + 5``
2. one-digit multiplication        ``7 * 8``
3. two-digit addition/subtraction  ``37 + 48``, ``23 - 57`` (results may be negative)
4. two-digit by one-digit multiply ``47 * 6``
5. three-digit +/-, 2x2-digit *    ``384 + 929``, ``47 * 38``
6. multi-step with precedence      ``12 + 7 * 3``, ``(12 + 7) * 3``, ``45 - 17 + 28``
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from spill_guard.errors import InvalidParameterError
from spill_guard.tasks.schema import TaskItem

DEFAULT_SEED = 20260218
DEFAULT_PER_LEVEL = 60


@dataclass(frozen=True)
class Level:
    difficulty: int
    name: str
    draw: Callable[[random.Random], tuple[str, int]]
    capacity: int  # how many distinct expressions exist, to refuse impossible sizes


def _digits(rng: random.Random, n: int) -> int:
    """A uniformly drawn integer with exactly ``n`` digits (1-digit means 1..9)."""
    return rng.randint(10 ** (n - 1) if n > 1 else 1, 10**n - 1)


def _binary(a: int, op: str, b: int) -> tuple[str, int]:
    value = {"+": a + b, "-": a - b, "*": a * b}[op]
    return f"{a} {op} {b}", value


def _level1(rng: random.Random) -> tuple[str, int]:
    return _binary(_digits(rng, 1), "+", _digits(rng, 1))


def _level2(rng: random.Random) -> tuple[str, int]:
    return _binary(rng.randint(2, 9), "*", rng.randint(2, 9))


def _level3(rng: random.Random) -> tuple[str, int]:
    return _binary(_digits(rng, 2), rng.choice("+-"), _digits(rng, 2))


def _level4(rng: random.Random) -> tuple[str, int]:
    a, b = _digits(rng, 2), rng.randint(2, 9)
    return _binary(a, "*", b) if rng.random() < 0.5 else _binary(b, "*", a)


def _level5(rng: random.Random) -> tuple[str, int]:
    if rng.random() < 0.5:
        return _binary(_digits(rng, 2), "*", _digits(rng, 2))
    return _binary(_digits(rng, 3), rng.choice("+-"), _digits(rng, 3))


def _level6(rng: random.Random) -> tuple[str, int]:
    a, b, c = _digits(rng, 2), _digits(rng, 2), rng.randint(2, 9)
    form = rng.randrange(4)
    if form == 0:  # precedence: multiplication binds tighter
        return f"{a} + {b} * {c}", a + b * c
    if form == 1:
        return f"({a} + {b}) * {c}", (a + b) * c
    if form == 2:
        return f"{a} * {c} - {b}", a * c - b
    d = _digits(rng, 2)
    return f"{a} - {b} + {d}", a - b + d


LEVELS: tuple[Level, ...] = (
    Level(1, "1-digit addition", _level1, 81),
    Level(2, "1-digit multiplication", _level2, 64),
    Level(3, "2-digit addition/subtraction", _level3, 2 * 90 * 90),
    Level(4, "2-digit by 1-digit multiplication", _level4, 2 * 90 * 8),
    Level(5, "3-digit addition/subtraction, 2-digit multiplication", _level5, 10**6),
    Level(6, "multi-step with operator precedence", _level6, 10**6),
)


def generate_arithmetic(per_level: int = DEFAULT_PER_LEVEL, seed: int = DEFAULT_SEED) -> list[TaskItem]:
    """``per_level`` distinct questions for each of the six levels, easiest first.

    Deterministic for a given ``(per_level, seed)``: the same call always returns the
    same items in the same order, on any platform (``random.Random`` with a str seed is
    stable across Python versions).
    """
    too_big = [lvl.name for lvl in LEVELS if per_level > lvl.capacity]
    if per_level < 1 or too_big:
        smallest = min(lvl.capacity for lvl in LEVELS)
        raise InvalidParameterError(
            f"per_level={per_level!r} is impossible; pass 1..{smallest} "
            f"(level(s) {too_big} have fewer distinct questions)."
        )
    items: list[TaskItem] = []
    for level in LEVELS:
        rng = random.Random(f"{seed}:{level.difficulty}")
        seen: set[str] = set()
        while len(seen) < per_level:
            expression, value = level.draw(rng)
            if expression in seen:
                continue
            seen.add(expression)
            items.append(
                TaskItem(
                    id=f"arith-d{level.difficulty}-{len(seen):03d}",
                    question=f"What is {expression}?",
                    answers=[str(value)],
                    meta={"difficulty": level.difficulty, "level": level.name, "expression": expression},
                )
            )
    return items
