"""``spill-guard review``: list, inspect, label and export the guard's review log.

Every subcommand takes ``--log PATH`` (a ``.jsonl`` or ``.sqlite``/``.db`` log written by the
guard), or reads the path from ``$SPILL_GUARD_LOG``. Record ids may be shortened to any
unique prefix (``list`` shows 8 characters).

Everything printed from a record goes through ``printable`` (control characters as escapes);
``export`` and ``html`` never write over the log they read, and replace their output file
atomically.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

from spill_guard.cli import studio as studio_cli
from spill_guard.review import ReviewLogError, ReviewLogNotFoundError, ReviewLogWarning, ReviewRecord, open_log
from spill_guard.review.atomic_file import atomic_text_file
from spill_guard.review.base import ReviewSink
from spill_guard.review.errors import NotAReviewLogError, OutputIsTheLogError
from spill_guard.review.html_report import write_html
from spill_guard.review.opening import JSONL_SUFFIXES, SQLITE_SUFFIXES
from spill_guard.review.postgres_sink import is_postgres_url
from spill_guard.review.record import ACTIONS, LABELS
from spill_guard.review.redaction import redact_patterns
from spill_guard.review.terminal import color_mode, json_for_terminal, printable, render_record

LOG_ENV = "SPILL_GUARD_LOG"
CSV_COLUMNS = (
    "id",
    "created_at",
    "action",
    "flagged",
    "score",
    "threshold",
    "spec",
    "locator",
    "label",
    "label_note",
    "labelled_at",
    "labelled_by",
    "corrected_answer",
    "model",
    "tags",
    "question",
    "context",
    "answer",
    "original_answer",
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "review",
        help="list, inspect, label and export the guard's review log",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    log_option = argparse.ArgumentParser(add_help=False)
    log_option.add_argument(
        "--log", default=None, metavar="PATH", help=f"review log (.jsonl, .sqlite, .db); default: ${LOG_ENV}"
    )
    commands = p.add_subparsers(dest="review_command", metavar="SUBCOMMAND")
    p.set_defaults(run=lambda args: _usage(p))

    ls = commands.add_parser("list", parents=[log_option], help="one line per record")
    ls.add_argument("--flagged", action="store_true", help="only records whose score crossed the threshold")
    ls.add_argument("--unlabelled", action="store_true", help="only records without a human label")
    ls.add_argument("--action", choices=ACTIONS, default=None, help="only records with this action")
    ls.add_argument("--limit", type=int, default=None, help="only the N most recent matching records")
    ls.set_defaults(run=_reporting_skips(run_list))

    show = commands.add_parser("show", parents=[log_option], help="one record in full, with its token heatmap")
    show.add_argument("id", help="record id or a unique prefix of it")
    show.add_argument("--json", action="store_true", help="print the record as JSON instead")
    show.set_defaults(run=_reporting_skips(run_show))

    label = commands.add_parser("label", parents=[log_option], help="mark a record's answer correct or incorrect")
    label.add_argument("id", help="record id or a unique prefix of it")
    label.add_argument("label", choices=LABELS)
    label.add_argument(
        "--note", default=None, help="why (kept with the label; e-mail addresses and phone numbers in it are redacted)"
    )
    label.add_argument("--reviewer", default=None, metavar="NAME", help="who gives the label (stored as given)")
    label.add_argument(
        "--corrected-answer",
        default=None,
        metavar="TEXT",
        help="the answer that is right (kept with the label; e-mail addresses and phone numbers in it are redacted)",
    )
    label.add_argument(
        "--keep-pii",
        action="store_true",
        help="store the note and the corrected answer exactly as typed (no e-mail / phone redaction)",
    )
    label.set_defaults(run=_reporting_skips(run_label))

    export = commands.add_parser("export", parents=[log_option], help="write records as JSONL or CSV")
    export.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    export.add_argument("-o", "--output", required=True, help="file to write ('-' for stdout)")
    export.add_argument("--labelled-only", action="store_true", help="only records with a human label")
    export.set_defaults(run=_reporting_skips(run_export))

    health = commands.add_parser(
        "health", parents=[log_option], help="does the threshold still hold on the labels gathered so far?"
    )
    rule = health.add_mutually_exclusive_group()
    rule.add_argument("--calibration", default=None, metavar="FILE", help="measure this calibration's rule")
    rule.add_argument("--threshold", type=float, default=None, help="measure this threshold (risk scale)")
    health.add_argument(
        "--target",
        type=float,
        default=None,
        help="false-flag rate to hold (default: the calibration's target, where it has one)",
    )
    health.add_argument("--json", action="store_true", help="print the numbers as JSON")
    health.set_defaults(run=_reporting_skips(run_health))

    studio = commands.add_parser(
        "serve",
        parents=[log_option],
        help="open the review studio: label, measure the threshold and fit a new one in a browser",
        description=studio_cli.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    studio_cli.add_arguments(studio)
    studio.set_defaults(run=_reporting_skips(run_studio))

    report = commands.add_parser("html", parents=[log_option], help="write a self-contained HTML report")
    report.add_argument("-o", "--output", required=True, help="HTML file to write")
    report.add_argument("--flagged", action="store_true", help="only flagged records")
    report.add_argument("--title", default=None)
    report.set_defaults(run=_reporting_skips(run_html))


def _reporting_skips(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Run a subcommand with each skipped log line shown as one ``warning: ...`` line on stderr
    (instead of Python's ``file:line: ReviewLogWarning:`` format with a source line)."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"warning: {printable(str(message))}", file=sys.stderr)

    @functools.wraps(run)
    def wrapped(args: argparse.Namespace) -> int:
        with warnings.catch_warnings():
            warnings.simplefilter("always", ReviewLogWarning)
            warnings.showwarning = show
            return run(args)

    return wrapped


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def open_existing_log(args: argparse.Namespace) -> ReviewSink:
    """The log named by ``--log`` or ``$SPILL_GUARD_LOG``; it must exist (reviewing reads it)."""
    path = args.log or os.environ.get(LOG_ENV)
    if not path:
        raise ReviewLogError(
            f"no review log given: pass --log PATH or set {LOG_ENV}=PATH "
            "(the file the guard writes with SpillGuard(..., log=PATH))."
        )
    if not is_postgres_url(path) and Path(path).is_dir():
        raise NotAReviewLogError(_directory_message(Path(path)))
    if not is_postgres_url(path) and not Path(path).is_file():  # a postgresql:// log is a table, not a file
        raise ReviewLogNotFoundError(
            f"review log {path!r} does not exist; check the path, or run the guard "
            "with log=PATH first so it has records to review."
        )
    return open_log(path)


def run_studio(args: argparse.Namespace) -> int:
    with open_existing_log(args) as log:  # the same checks as every review command, before the server starts
        location = log.location if is_postgres_url(log.location) else str(args.log or os.environ.get(LOG_ENV))
    if is_postgres_url(location):
        location = str(args.log or os.environ.get(LOG_ENV))  # the URL with its password: location masks it
    return studio_cli.run(args, location)


def _directory_message(folder: Path) -> str:
    """What to say when ``--log`` names a directory: it is one, and which log files in it to pass instead."""
    logs = (
        sorted(p.name for p in folder.iterdir() if p.suffix.lower() in JSONL_SUFFIXES + SQLITE_SUFFIXES and p.is_file())
        if os.access(folder, os.R_OK | os.X_OK)
        else []
    )
    found = (
        f" it holds {', '.join(repr(n) for n in logs[:5])}{' ...' if len(logs) > 5 else ''}: pass one of them, "
        f"e.g. --log {str(folder / logs[0])!r}."
        if logs
        else " it holds no *.jsonl / *.sqlite / *.sqlite3 / *.db file."
    )
    return (
        f"review log {str(folder)!r} is a directory, not a log file;{found} A review log is the file the guard "
        "writes with SpillGuard(..., log=PATH): *.jsonl, *.sqlite / *.sqlite3 / *.db, or a postgresql:// URL."
    )


def _clip(text: str, width: int) -> str:
    text = printable(" ".join(text.split()))
    return text if len(text) <= width else text[: width - 1] + "…"


def _score_cell(record: ReviewRecord) -> str:
    score = "n/a" if record.score is None else f"{record.score:.3f}"
    threshold = "-" if record.threshold is None else f"{record.threshold:.3f}"
    return f"{score}/{threshold}"


def run_list(args: argparse.Namespace) -> int:
    with open_existing_log(args) as log:
        records = log.records()
    if args.flagged:
        records = [r for r in records if r.flagged]
    if args.unlabelled:
        records = [r for r in records if r.label is None]
    if args.action:
        records = [r for r in records if r.action == args.action]
    if args.limit is not None:
        if args.limit < 1:
            raise ReviewLogError(f"--limit {args.limit} must be at least 1.")
        records = records[-args.limit :]
    if not records:
        print("no matching records")
        return 0
    print(f"{'id':<8}  {'time (UTC)':<19}  {'action':<9}  {'score/threshold':>17}  {'label':<9}  question")
    for r in records:
        when = r.created_at[:19].replace("T", " ")
        print(
            printable(f"{r.short_id:<8}  {when:<19}  {r.action:<9}  {_score_cell(r):>17}  {r.label or '-':<9}  ")
            + _clip(r.question, 60)
        )
    print(f"{len(records)} record(s)")
    return 0


def run_show(args: argparse.Namespace) -> int:
    with open_existing_log(args) as log:
        record = log.get(args.id)
    if args.json:
        # Python-mode dump: JSON mode cannot hold a lone surrogate; the escapes keep the data exact.
        print(json_for_terminal(json.dumps(record.model_dump(), ensure_ascii=False, allow_nan=False, indent=2)))
    else:
        print(render_record(record, mode=color_mode(sys.stdout)))
    return 0


def run_label(args: argparse.Namespace) -> int:
    with open_existing_log(args) as log:
        if not args.keep_pii and log.redact is None:
            # The CLI cannot know the hook the guard wrote the log with, so a note or a corrected
            # answer typed here gets at least the default e-mail / phone redaction before it
            # reaches the log.
            log.redact = redact_patterns()
        record = log.set_label(
            args.id, args.label, note=args.note, reviewer=args.reviewer, corrected_answer=args.corrected_answer
        )
    by = f" by {record.labelled_by}" if record.labelled_by is not None else ""
    print(printable(f"{record.id}: {record.label}{by}" + (f" ({record.label_note})" if record.label_note else "")))
    if record.corrected_answer is not None:
        print(printable(f"corrected answer: {record.corrected_answer}"))
    return 0


TEXT_COLUMNS = (
    "model",
    "tags",
    "question",
    "context",
    "answer",
    "original_answer",
    "label_note",
    "labelled_by",
    "corrected_answer",
)


def _csv_row(record: ReviewRecord) -> dict:
    data = record.model_dump()  # Python mode: JSON mode cannot hold a lone surrogate
    row = {k: data[k] for k in CSV_COLUMNS}
    row["tags"] = ";".join(record.tags)
    for key in TEXT_COLUMNS:
        # Questions and model output are untrusted: a cell starting with = + - @ would run as a
        # formula in a spreadsheet (CSV injection), so such text gets a leading apostrophe.
        if isinstance(row[key], str) and row[key][:1] in ("=", "+", "-", "@", "\t", "\r"):
            row[key] = "'" + row[key]
    for key, value in row.items():
        if isinstance(value, str):
            # A lone surrogate cannot be written as UTF-8: show it as its \udcff escape.
            row[key] = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return row


def _refuse_output_over_log(output: str, log: ReviewSink) -> None:
    """Refuse ``-o`` naming the log itself (or its SQLite -wal/-shm/-journal files): writing the
    report there would destroy what it reports on. Same file by inode (symlinks, hard links,
    relative paths), or the same resolved path for a file that does not exist yet."""
    log_path = getattr(log, "path", None)
    if not isinstance(log_path, Path):
        return  # not a file (e.g. a database URL): nothing -o could overwrite
    candidates = [log_path] + [log_path.with_name(log_path.name + s) for s in ("-wal", "-shm", "-journal")]
    target = Path(output)
    for candidate in candidates:
        same = (
            os.path.samefile(target, candidate)
            if target.exists() and candidate.exists()
            else os.path.realpath(target) == os.path.realpath(candidate)
        )
        if same:
            raise OutputIsTheLogError(
                f"-o {output!r} is the review log {str(candidate)!r} this command reads"
                f"{'' if candidate == log_path else ' (its SQLite side file)'}; writing there would destroy the "
                "log. Choose another output path, e.g. -o review-export.jsonl."
            )


def _cannot_write(output: str, exc: OSError) -> ReviewLogError:
    return ReviewLogError(
        f"cannot write {output!r}: {exc.strerror or exc}; choose a writable path with -o "
        "(nothing was written; an existing file there is unchanged)."
    )


def _write_records(out, records: list[ReviewRecord], fmt: str, *, to_terminal: bool) -> None:
    if fmt == "jsonl":
        for r in records:
            line = r.to_json()
            out.write((json_for_terminal(line) if to_terminal else line) + "\n")
        return
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    for r in records:
        row = _csv_row(r)
        writer.writerow({k: printable(v) if to_terminal and isinstance(v, str) else v for k, v in row.items()})


def run_export(args: argparse.Namespace) -> int:
    with open_existing_log(args) as log:
        if args.output != "-":
            _refuse_output_over_log(args.output, log)
        records = log.labelled() if args.labelled_only else log.records()
    if args.output == "-":
        # JSON escapes are lossless; CSV on a terminal shows control characters as escapes.
        _write_records(sys.stdout, records, args.format, to_terminal=args.format == "jsonl" or sys.stdout.isatty())
        return 0
    try:
        with atomic_text_file(args.output, newline="") as out:
            _write_records(out, records, args.format, to_terminal=False)
    except OSError as exc:
        raise _cannot_write(args.output, exc) from exc
    print(f"wrote {len(records)} record(s) to {printable(args.output)}", file=sys.stderr)
    return 0


def run_html(args: argparse.Namespace) -> int:
    with open_existing_log(args) as log:
        _refuse_output_over_log(args.output, log)
        records = log.records()
        title = args.title or f"spill_guard review log: {log.location}"
    if args.flagged:
        records = [r for r in records if r.flagged]
    try:
        path = write_html(records, args.output, title=title)
    except OSError as exc:
        raise _cannot_write(args.output, exc) from exc
    print(f"wrote {len(records)} record(s) to {printable(str(path))}", file=sys.stderr)
    return 0


def run_health(args: argparse.Namespace) -> int:
    """The rule (a calibration's, a threshold, else the one that judged the newest record) on the log's labels."""
    from spill_guard.calibration import Calibration
    from spill_guard.calibration.health import threshold_health
    from spill_guard.guard.log_rule import rule_for_log

    with open_existing_log(args) as log:
        location = log.location
        records = log.records()
    newest = max(records, key=lambda r: r.created_at) if records else None
    chosen = rule_for_log(
        newest,
        location=location,
        calibration=None if args.calibration is None else Calibration.load(args.calibration),
        calibration_name=args.calibration,
        threshold=args.threshold,
        target=args.target,
    )
    rule, target, where = chosen.rule, chosen.target, chosen.source
    health = threshold_health(location, rule, target=target)
    if args.json:
        print(json.dumps({"rule_source": where, **health.to_json()}, indent=1))
        return 0
    print(
        f"rule {health.rule_version}: {health.spec} on {health.locator} spans, flag when risk > {health.threshold:g}"
        f" ({where})"
    )
    print(f"labelled records scored: {health.labelled} ({health.incorrect} incorrect, {health.correct} correct)")
    for reason in health.skipped:
        print(f"  skipped: {printable(reason)}")
    if health.metrics is None:
        print("AUROC: needs both correct and incorrect labels")
    else:
        low, high = health.metrics.auroc_ci
        print(
            f"AUROC {health.metrics.auroc:.3f} (95 % bootstrap CI {low:.3f} to {high:.3f}); recall "
            f"{health.metrics.recall:.3f}, F1 {health.metrics.f1:.3f}, flagged {health.metrics.abstention_rate:.1%}"
        )
    low, high = health.false_flag_ci
    rate = health.false_flags / health.correct if health.correct else 0.0
    line = (
        f"false flags: {health.false_flags} of {health.correct} correct answers = {rate:.1%} "
        f"(Wilson 95 % CI {low:.1%} to {high:.1%})"
    )
    if health.target is not None:
        line += f"; target {health.target:.1%}: " + ("holds" if health.holds else "does NOT hold (recalibrate)")
    print(line)
    for day in health.by_day:
        print(f"  {day.day}: {day.flagged} of {day.records} records flagged ({day.flag_rate:.1%})")
    return 0
