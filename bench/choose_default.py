"""Pick the default spilled-energy configuration on the *dev* split, to be reported on *test*.

Reads DIR/<task>-dev/results.json for every built-in task and ranks every spilled-energy
configuration (scorer ``spilled_energy``, any pooling, any captured β, any locator) by its
mean AUROC over the tasks. The winner becomes ``DEFAULT_CONFIG`` in
spill_guard/evaluation/runner.py; the test split is never looked at here.

    python bench/choose_default.py bench/out
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

TASKS = ("arithmetic", "capitals", "elements")


def main(root: str) -> None:
    per_config: dict[tuple[str, str], list[float]] = defaultdict(list)
    baseline: dict[tuple[str, str], list[float]] = defaultdict(list)
    for task in TASKS:
        results = json.loads((Path(root) / f"{task}-dev" / "results.json").read_text())["results"]
        for r in results:
            if r["auroc"] is None:
                continue
            key = (r["spec"], r["locator"])
            (per_config if r["scorer"] == "spilled_energy" else baseline)[key].append(r["auroc"])
    complete = {k: v for k, v in per_config.items() if len(v) == len(TASKS)}
    ranked = sorted(complete.items(), key=lambda kv: -sum(kv[1]) / len(kv[1]))
    print("dev split, mean AUROC over", ", ".join(TASKS))
    print("top spilled-energy configurations:")
    for (spec, loc), aucs in ranked[:10]:
        print(f"  {spec:<26} {loc:<30} mean {sum(aucs) / 3:.3f}  per task {[round(a, 3) for a in aucs]}")
    best_base = sorted(
        ((k, v) for k, v in baseline.items() if len(v) == len(TASKS)), key=lambda kv: -sum(kv[1]) / len(kv[1])
    )[:5]
    print("top other configurations (for reference):")
    for (spec, loc), aucs in best_base:
        print(f"  {spec:<26} {loc:<30} mean {sum(aucs) / 3:.3f}  per task {[round(a, 3) for a in aucs]}")
    (spec, loc), _ = ranked[0]
    print(f"\npick: {spec} on {loc}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "bench/out")
