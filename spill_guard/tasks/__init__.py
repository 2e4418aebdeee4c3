"""Question sets with accepted answers, and a judge that marks located answer spans.

>>> from spill_guard.tasks import load_task, judge
>>> items = load_task("capitals")            # or "arithmetic", "elements", "my.jsonl"
>>> judge("Paris, France", ["Paris"])
True
"""

from spill_guard.tasks.arithmetic import generate_arithmetic
from spill_guard.tasks.builtin import BUILTIN_TASKS, load_task
from spill_guard.tasks.judge import Verdict, judge, judge_verdict
from spill_guard.tasks.normalize import normalize_answer
from spill_guard.tasks.schema import (
    TaskFormatError,
    TaskItem,
    TaskNotFoundError,
    load_jsonl,
    parse_jsonl_lines,
    save_jsonl,
)

__all__ = [
    "BUILTIN_TASKS",
    "TaskFormatError",
    "TaskItem",
    "TaskNotFoundError",
    "Verdict",
    "generate_arithmetic",
    "judge",
    "judge_verdict",
    "load_jsonl",
    "load_task",
    "normalize_answer",
    "parse_jsonl_lines",
    "save_jsonl",
]
