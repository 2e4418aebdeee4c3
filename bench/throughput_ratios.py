"""Throughput ratios of benchmark arms against a baseline arm, from interleaved repeats.

Shared by ``vllm_overhead.py`` and its GPU section (``vllm_overhead_gpu.py``).
"""

from __future__ import annotations

import statistics


def summarize(samples: dict[str, list[float]], baseline: str = "plain") -> dict[str, dict]:
    """Per arm: the samples, their median, and the throughput ratio to the baseline's median."""
    base = statistics.median(samples[baseline])
    out = {}
    for arm, values in samples.items():
        median = statistics.median(values)
        # spread of the ratio: each repeat's arm sample over the same repeat's baseline sample
        paired = [v / b for v, b in zip(values, samples[baseline])]
        out[arm] = {"tokens_per_s": values, "median": median, "ratio": median / base,
                    "overhead_percent": 100 * (1 - median / base),
                    "paired_ratio_min": min(paired), "paired_ratio_max": max(paired)}
    return out
