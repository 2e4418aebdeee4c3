"""The benchmark's result contract (``results.json``) and its markdown rendering.

``default`` is the documented default configuration (chosen a priori, see
docs/benchmarks.md); ``results`` holds every scorer × pooling × locator with the same fields.
AUROC is reported as measured (hallucination = positive class, higher score = riskier):
a value below 0.5 means the score points the wrong way on this task, and is shown as such.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

RESULTS_SCHEMA_VERSION = 1


class ConfigResult(BaseModel):
    """Detection quality of one scorer × pooling × locator on one task."""

    scorer: str
    pooling: str
    beta: float = 1.0
    locator: str
    spec: str = Field(description="scorer:pooling[@beta]")
    auroc: float | None = Field(description="None when the scored items hold one class only")
    auroc_ci: tuple[float, float] | None = None
    aurc: float | None = None
    prr: float | None = None
    fpr_at_95_tpr: float | None = None
    accuracy: float = Field(description="share of all items judged correct on this locator's span")
    n: int = Field(description="items scored (those where the locator found a span)")
    n_positive: int = Field(0, description="scored items judged incorrect (hallucinations)")


class LocatorSummary(BaseModel):
    """How a locator fared: accuracy of the judged spans and why spans were missing."""

    name: str
    accuracy: float
    n_found: int
    reasons: dict[str, int]


class BenchReport(BaseModel):
    """Everything one ``spill-guard bench`` run measured on one task."""

    schema_version: int = RESULTS_SCHEMA_VERSION
    task: str
    model: str
    split: str
    n: int
    max_new_tokens: int
    seconds_per_item: float = Field(description="generation + capture wall time per item")
    seconds_scoring_per_item: float = Field(description="locating, judging and scoring, per item")
    locators: list[LocatorSummary]
    default: ConfigResult
    results: list[ConfigResult]

    def best(self, *, scorers: tuple[str, ...] | None = None, locator: str | None = None) -> ConfigResult | None:
        """Highest-AUROC entry among ``scorers`` (all if None) on ``locator`` (all if None)."""
        rows = [
            r
            for r in self.results
            if r.auroc is not None
            and (scorers is None or r.scorer in scorers)
            and (locator is None or r.locator == locator)
        ]
        return max(rows, key=lambda r: r.auroc, default=None)  # type: ignore[arg-type, return-value]


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _row(r: ConfigResult) -> str:
    ci = f"[{r.auroc_ci[0]:.2f}, {r.auroc_ci[1]:.2f}]" if r.auroc_ci else "–"
    return (
        f"| {r.locator} | `{r.spec}` | {_fmt(r.auroc)} | {ci} | {_fmt(r.aurc)} | {_fmt(r.prr)} | "
        f"{_fmt(r.fpr_at_95_tpr)} | {r.n} | {r.n_positive} |"
    )


HEADER = (
    "| locator | score | AUROC | 95% CI | AURC | PRR | FPR@95TPR | n | n wrong |\n|---|---|---|---|---|---|---|---|---|"
)


def to_markdown(report: BenchReport, *, top: int = 12) -> str:
    """A readable summary: accuracy per locator, the default, and the best configurations."""
    lines = [
        f"# {report.task} — {report.model} ({report.split} split, n = {report.n})",
        "",
        f"Generation + capture: {report.seconds_per_item:.2f} s/item; locating + scoring: "
        f"{report.seconds_scoring_per_item * 1000:.1f} ms/item. Higher score = riskier; AUROC as measured.",
        "",
        "| locator | accuracy | spans found | missing (reasons) |",
        "|---|---|---|---|",
    ]
    for loc in report.locators:
        missing = ", ".join(f"{k}: {v}" for k, v in sorted(loc.reasons.items()) if k != "found") or "–"
        lines.append(f"| {loc.name} | {loc.accuracy:.3f} | {loc.n_found}/{report.n} | {missing} |")
    lines += ["", "## Default configuration", "", HEADER, _row(report.default), ""]
    ranked = sorted((r for r in report.results if r.auroc is not None), key=lambda r: -r.auroc)  # type: ignore[operator]
    lines += [f"## Top {top} configurations", "", HEADER] + [_row(r) for r in ranked[:top]]
    lines += ["", "## Every configuration", "", HEADER] + [_row(r) for r in report.results]
    return "\n".join(lines) + "\n"
