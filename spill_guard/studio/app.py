"""The review studio: a web app over a review log (``spill-guard review serve``).

Pages (server-side Jinja2 templates, one vendored script, no CDN): the queue (filters, paging,
progress, bulk labels), the focus view of one record (heatmap against correct answers, label /
note / corrected answer, hotkeys, auto-advance to the next unleased item), reviewers' disagreements,
and threshold health (AUROC, false flags against the target, histograms, flag rate per day, a
what-if control, "fit a new calibration"). Every label goes through ``ReviewSink.set_label`` with
the signed-in reviewer's name; the queue reads a :class:`~spill_guard.review.index.RecordIndex`.

Security: every response carries a Content-Security-Policy without inline script or style, record
text is escaped by Jinja2's autoescaping, state-changing requests need a session with its CSRF
token or a reviewer's bearer token, and ``read_only`` refuses them all.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlencode

from fastapi import FastAPI, Request  # the review-ui extra: imported by create_studio_app only
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from spill_guard.errors import SpillGuardError
from spill_guard.review import open_log
from spill_guard.review.changes import RecordSummary
from spill_guard.review.errors import RecordNotFoundError
from spill_guard.review.index import LABEL_STATES, SORTS, RecordFilter, RecordIndex
from spill_guard.review.record import ACTIONS, Label, LabelEvent, ReviewRecord
from spill_guard.review.terminal import printable, visible
from spill_guard.studio import heat
from spill_guard.studio.auth import LOGIN_COOKIE, SESSION_COOKIE, Sessions, check_name, same_token
from spill_guard.studio.leases import LeaseBook
from spill_guard.studio.settings import StudioSettings

HERE = Path(__file__).parent
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
FILTER_FIELDS = tuple(RecordFilter.model_fields)
REFERENCE_ANSWERS = 300  # labelled-correct answers read for the heatmap's reference
log = logging.getLogger("spill_guard.studio")


class StudioError(Exception):
    """An error page: ``status`` and a message for the person (never a stack trace)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _NeedLogin(Exception):
    pass


class Studio:
    """The state behind the pages: the log, its index, leases, sessions and cached numbers."""

    def __init__(self, settings: StudioSettings) -> None:
        self.settings = settings
        self.sink = open_log(settings.log, redact=settings.redact)
        self.index = RecordIndex(self.sink)
        self.index.refresh()
        self.leases = LeaseBook(settings.lease_seconds)
        self.sessions = Sessions()
        self._refreshed = 0.0
        self._refresh_lock = threading.Lock()
        self._reference: tuple[int, float, heat.Reference] | None = None
        self._health: dict[tuple, Any] = {}
        self._fit_lock = threading.Lock()
        self._spill_model: Any = None

    def refresh(self) -> None:
        """Follow the log (what the guard, the CLI or another studio wrote since), at most 4 times a second."""
        now = time.monotonic()
        if now - self._refreshed < 0.25:
            return
        with self._refresh_lock:
            self.index.refresh()
            self._refreshed = time.monotonic()

    # -- labels --------------------------------------------------------------------------
    def label(self, record_id: str, label: str, reviewer: str, note: str | None, corrected: str | None) -> ReviewRecord:
        record = self.sink.set_label(
            record_id, label, note=note or None, reviewer=reviewer, corrected_answer=corrected or None
        )
        self.index.note_label(
            LabelEvent(
                id=record.id,
                label=cast(Label, record.label),  # set_label checked it; the labelled record carries it back
                note=record.label_note,
                labelled_at=record.labelled_at,
                reviewer=reviewer,
                corrected_answer=record.corrected_answer,
            )
        )
        self.leases.release(reviewer, record.id)
        return record

    # -- heatmap reference ---------------------------------------------------------------
    def reference(self) -> heat.Reference:
        """Token Δ of recent answers labelled correct (else passed); rebuilt after labels change, at most every 30 s."""
        cached = self._reference
        if cached is not None and (cached[0] == self.index.version or time.monotonic() - cached[1] < 30):
            return cached[2]
        rows = list(reversed(list(self.index.summaries())))
        chosen = [s for s in rows if s.label == "correct"][:REFERENCE_ANSWERS]
        source = f"{len(chosen)} answers labelled correct"
        if len(chosen) < 20:
            chosen = [s for s in rows if s.label != "incorrect" and s.action == "passed"][:REFERENCE_ANSWERS]
            source = f"{len(chosen)} answers the guard passed (fewer than 20 are labelled correct yet)"
        answers = [(r.tokens, r.token_scores) for r in self.sink.get_many([s.id for s in chosen])]
        reference = heat.Reference.from_answers(answers, source)
        self._reference = (self.index.version, time.monotonic(), reference)
        return reference

    # -- health --------------------------------------------------------------------------
    def log_rule(self) -> Any:
        from spill_guard.calibration import Calibration
        from spill_guard.guard.log_rule import rule_for_log

        rows = list(self.index.summaries())
        newest = max(rows, key=lambda s: s.created_at) if rows else None
        record = self.sink.get(newest.id) if newest is not None else None
        calibration = Calibration.load(self.settings.calibration) if self.settings.calibration else None
        return rule_for_log(
            record,
            location=self.sink.location,
            calibration=calibration,
            calibration_name=self.settings.calibration,
            threshold=self.settings.threshold,
            target=self.settings.target,
        )

    def cached(self, key: tuple, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per index version (labels change the numbers)."""
        full = (self.index.version, *key)
        if full not in self._health:
            if len(self._health) > 32:
                self._health.clear()
            self._health[full] = compute()
        return self._health[full]

    def spill_model(self) -> Any:
        if self._spill_model is None:
            from spill_guard.spill_model import SpillModel

            self._spill_model = SpillModel.load(self.settings.model, device="cpu")
        return self._spill_model


def create_studio_app(settings: StudioSettings) -> FastAPI:
    """The studio's FastAPI app over ``settings.log`` (opened and indexed here)."""
    studio = Studio(settings)
    app = FastAPI(title="spill_guard review studio", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.studio = studio
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["shown"] = lambda value: visible(printable(str(value)))
    templates.env.filters["num"] = _num
    templates.env.filters["pct"] = lambda v: "-" if v is None else f"{100 * float(v):.2f} %"
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.exception_handler(StudioError)
    async def studio_error(request: Request, exc: StudioError) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        return page(request, "error.html", {"message": exc.message}, status=exc.status)

    @app.exception_handler(_NeedLogin)
    async def need_login(request: Request, exc: _NeedLogin) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": "sign in: send 'Authorization: Bearer <reviewer token>'"}, status_code=401)
        return RedirectResponse("/login", status_code=303)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("studio request failed: %s %s", request.method, request.url.path)
        message = str(exc) if isinstance(exc, SpillGuardError) else "internal error; the server log has the details"
        return page(request, "error.html", {"message": message}, status=500)

    # -- helpers -------------------------------------------------------------------------
    def who(request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            name = settings.reviewers.name_of(header[7:].strip())
            if name is None:
                raise StudioError(401, "unknown reviewer token")
            return name
        session = studio.sessions.get(request.cookies.get(SESSION_COOKIE))
        return None if session is None else session.reviewer

    def reviewer(request: Request) -> str:
        name = who(request)
        if name is None:
            raise _NeedLogin()
        return name

    async def posted(request: Request) -> tuple[str, dict[str, Any]]:
        """The reviewer and form of a state-changing request, after the read-only, auth and CSRF checks."""
        if settings.read_only:
            raise StudioError(403, "this studio is read-only (started with --read-only): labels cannot change here.")
        form = await request.form()
        fields: dict[str, Any] = {k: form.getlist(k) if k == "ids" else form.get(k) for k in form.keys()}
        if request.headers.get("authorization", "").lower().startswith("bearer "):
            return reviewer(request), fields
        session = studio.sessions.get(request.cookies.get(SESSION_COOKIE))
        if session is None:
            raise StudioError(401, "sign in first: this request carried no reviewer session or token.")
        given = fields.get("csrf") or request.headers.get("x-csrf-token")
        if not same_token(given if isinstance(given, str) else None, session.csrf):
            raise StudioError(403, "missing or wrong CSRF token; reload the page and try again.")
        return session.reviewer, fields

    def page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
        session = studio.sessions.get(request.cookies.get(SESSION_COOKIE))
        base = {
            "reviewer": None if session is None else session.reviewer,
            "csrf": None if session is None else session.csrf,
            "read_only": settings.read_only,
            "log_location": studio.sink.location,
        }
        return templates.TemplateResponse(request, name, {**base, **context}, status_code=status)

    def parse_filter(params: Any) -> RecordFilter:
        given = {k: params.get(k) for k in FILTER_FIELDS if params.get(k) not in (None, "")}
        try:
            return RecordFilter.model_validate(given)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise StudioError(400, f"the filter is not valid: {problems}") from None

    def query_of(flt: RecordFilter, **extra: Any) -> str:
        defaults = RecordFilter()
        fields = {k: v for k in FILTER_FIELDS if (v := getattr(flt, k)) is not None and v != getattr(defaults, k)}
        fields.update({k: v for k, v in extra.items() if v is not None})
        return urlencode(fields)

    def record_or_404(record_id: str) -> ReviewRecord:
        try:
            return studio.sink.get(record_id)
        except RecordNotFoundError:
            raise StudioError(404, f"no record {record_id!r} in this log.") from None

    def next_candidates(flt: RecordFilter) -> list[str]:
        return [s.id for s in studio.index.matching(flt) if s.label is None]

    # -- sign in ---------------------------------------------------------------------------
    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request) -> Response:
        nonce = _nonce()
        response = page(request, "login.html", {"open": settings.reviewers.open, "login_csrf": nonce})
        response.set_cookie(LOGIN_COOKIE, nonce, httponly=True, samesite="strict", max_age=600)
        return response

    @app.post("/login")
    async def login(request: Request) -> Response:
        form = await request.form()
        if not same_token(_text(form.get("login_csrf")), request.cookies.get(LOGIN_COOKIE) or "\0"):
            raise StudioError(403, "the sign-in form expired or came from elsewhere; open /login again.")
        if settings.reviewers.open:
            try:
                name = check_name(_text(form.get("name")) or "")
            except SpillGuardError as exc:
                raise StudioError(400, str(exc)) from None
        else:
            found = settings.reviewers.name_of(_text(form.get("token")) or "")
            if found is None:
                raise StudioError(401, "unknown reviewer token; ask whoever runs the studio for yours.")
            name = found
        sid, _ = studio.sessions.start(name)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(SESSION_COOKIE, sid, httponly=True, samesite="strict")
        response.delete_cookie(LOGIN_COOKIE)
        return response

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        await posted(request) if not settings.read_only else None
        studio.sessions.end(request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    # -- queue -----------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse)
    def queue(request: Request, offset: int = 0) -> Response:
        reviewer(request)
        studio.refresh()
        flt = parse_filter(request.query_params)
        result = studio.index.page(flt, offset=max(0, offset), limit=settings.page_size)
        held = studio.leases.held()
        return page(
            request,
            "queue.html",
            {
                "flt": flt,
                "page": result,
                "held": held,
                "facets": studio.index.facets(),
                "actions": ACTIONS,
                "label_states": LABEL_STATES,
                "sorts": SORTS,
                "query": query_of(flt),
                "prev_query": query_of(flt, offset=max(0, result.offset - result.limit)) if result.offset else None,
                "next_query": query_of(flt, offset=result.offset + result.limit)
                if result.offset + result.limit < result.total
                else None,
                "message": request.query_params.get("message"),
            },
        )

    @app.get("/api/queue")
    def queue_json(request: Request, offset: int = 0, limit: int = 50) -> Response:
        reviewer(request)
        studio.refresh()
        flt = parse_filter(request.query_params)
        result = studio.index.page(flt, offset=max(0, offset), limit=min(max(1, limit), 500))
        return JSONResponse(
            {
                "total": result.total,
                "labelled": result.labelled,
                "offset": result.offset,
                "items": [_summary_json(s) for s in result.items],
            }
        )

    @app.get("/next")
    def next_item(request: Request) -> Response:
        name = reviewer(request)
        studio.refresh()
        flt = parse_filter(request.query_params)
        record_id = studio.leases.take_first(name, next_candidates(flt))
        if record_id is None:
            return RedirectResponse("/?" + query_of(flt, message="Nothing left to label in this filter."), 303)
        return RedirectResponse(f"/item/{record_id}?" + query_of(flt), status_code=303)

    @app.get("/api/next")
    def next_json(request: Request) -> Response:
        name = reviewer(request)
        studio.refresh()
        flt = parse_filter(request.query_params)
        return JSONResponse({"id": studio.leases.take_first(name, next_candidates(flt))})

    # -- focus -----------------------------------------------------------------------------
    @app.get("/item/{record_id}", response_class=HTMLResponse)
    def focus(request: Request, record_id: str) -> Response:
        name = reviewer(request)
        studio.refresh()
        flt = parse_filter(request.query_params)
        record = record_or_404(record_id)
        holder = studio.leases.take(name, record.id) if not settings.read_only else None
        before, after = studio.index.neighbours(record.id, flt)
        reference = studio.reference()
        cells = heat.cells(record.tokens, record.token_scores, record.span, reference)
        suggestion = "incorrect" if record.flagged else "correct"
        return page(
            request,
            "focus.html",
            {
                "r": record,
                "cells": cells,
                "bands": heat.BANDS,
                "reference": reference,
                "suggestion": suggestion,
                "holder": holder,
                "history": studio.index.history(record.id),
                "before": before,
                "after": after,
                "query": query_of(flt),
                "sources": _sources(record),
            },
        )

    @app.post("/item/{record_id}/label")
    async def label(request: Request, record_id: str) -> Response:
        name, form = await posted(request)
        return await run_in_threadpool(label_work, name, form, record_id)

    def label_work(name: str, form: dict[str, Any], record_id: str) -> Response:
        flt = parse_filter(_back_params(form))
        choice = _text(form.get("label"))
        record = record_or_404(record_id)
        if choice == "skip":
            studio.leases.release(name, record.id)
            candidates = [rid for rid in next_candidates(flt) if rid != record.id]
            following = studio.leases.take_first(name, candidates)
        elif choice in ("correct", "incorrect"):
            studio.label(record.id, choice, name, _text(form.get("note")), _text(form.get("corrected_answer")))
            if form.get("stay"):
                return RedirectResponse(f"/item/{record.id}?" + query_of(flt), status_code=303)
            following = studio.leases.take_first(name, next_candidates(flt))
        else:
            raise StudioError(400, f"label {choice!r} is not correct, incorrect or skip.")
        if following is None:
            return RedirectResponse("/?" + query_of(flt, message="Nothing left to label in this filter."), 303)
        return RedirectResponse(f"/item/{following}?" + query_of(flt), status_code=303)

    @app.post("/api/label")
    async def label_json(request: Request) -> Response:
        name, form = await posted(request)
        return await run_in_threadpool(label_json_work, name, form)

    def label_json_work(name: str, form: dict[str, Any]) -> Response:
        choice = _text(form.get("label"))
        if choice not in ("correct", "incorrect"):
            raise StudioError(400, f"label {choice!r} is not correct or incorrect.")
        record = record_or_404(_text(form.get("id")) or "")
        done = studio.label(record.id, choice, name, _text(form.get("note")), _text(form.get("corrected_answer")))
        return JSONResponse({"id": done.id, "label": done.label, "labelled_by": done.labelled_by})

    # -- bulk ------------------------------------------------------------------------------
    def bulk_targets(flt: RecordFilter, ids: list[str], everything: bool) -> list[str]:
        if everything:
            return [s.id for s in studio.index.matching(flt)]
        known = [i for i in ids if studio.index.summary(i) is not None]
        return list(dict.fromkeys(known))

    @app.get("/bulk", response_class=HTMLResponse)
    def bulk_confirm(request: Request) -> Response:
        reviewer(request)
        studio.refresh()
        flt = parse_filter(request.query_params)
        choice = request.query_params.get("give")
        if choice not in ("correct", "incorrect"):
            raise StudioError(400, "choose the label to give: correct or incorrect.")
        everything = request.query_params.get("all") == "1"
        ids = bulk_targets(flt, request.query_params.getlist("ids"), everything)
        if not ids:
            raise StudioError(400, "no record selected: tick some rows or 'all matching'.")
        already = sum(1 for i in ids if (s := studio.index.summary(i)) is not None and s.label is not None)
        return page(
            request,
            "bulk.html",
            {
                "flt": flt,
                "label": choice,
                "ids": [] if everything else ids,
                "everything": everything,
                "count": len(ids),
                "already": already,
                "query": query_of(flt),
            },
        )

    @app.post("/bulk")
    async def bulk(request: Request) -> Response:
        name, form = await posted(request)
        return await run_in_threadpool(bulk_work, name, form)

    def bulk_work(name: str, form: dict[str, Any]) -> Response:
        flt = parse_filter(_back_params(form))
        choice = _text(form.get("give"))
        if choice not in ("correct", "incorrect"):
            raise StudioError(400, "choose the label to give: correct or incorrect.")
        studio.refresh()
        ids = bulk_targets(flt, list(form.get("ids") or []), form.get("all") == "1")
        expected = _text(form.get("expected"))
        if expected != str(len(ids)):
            raise StudioError(
                409,
                f"the selection changed since you confirmed it ({expected} then, {len(ids)} now); "
                "go back to the queue and confirm again.",
            )
        note = _text(form.get("note"))
        for record_id in ids:
            studio.label(record_id, choice, name, note, None)
        return RedirectResponse("/?" + query_of(flt, message=f"Labelled {len(ids)} records {choice}."), 303)

    # -- disagreements ---------------------------------------------------------------------
    @app.get("/disagreements", response_class=HTMLResponse)
    def disagreements(request: Request) -> Response:
        reviewer(request)
        studio.refresh()
        found = studio.index.disagreements()
        reviewers = sorted({name for d in found for name in d.labels})
        return page(request, "disagreements.html", {"found": found, "reviewers": reviewers})

    # -- health ----------------------------------------------------------------------------
    @app.get("/health", response_class=HTMLResponse)
    def health(request: Request) -> Response:
        reviewer(request)
        studio.refresh()
        return page(request, "health.html", health_context(request.query_params, fitted=None))

    def health_context(params: Any, fitted: Any) -> dict[str, Any]:
        from spill_guard.calibration.errors import CalibrationError
        from spill_guard.calibration.health import labelled_risks, threshold_for_rate, threshold_health, what_if

        try:
            chosen = studio.cached(("rule",), studio.log_rule)
        except SpillGuardError as exc:
            return {"problem": str(exc), "fitted": fitted}
        rule = chosen.rule
        try:
            risks = studio.cached(("risks", rule.version), lambda: labelled_risks(settings.log, rule))
            numbers = studio.cached(
                ("health", rule.version),
                lambda: threshold_health(settings.log, rule, target=chosen.target, risks=risks),
            )
        except CalibrationError as exc:
            return {"problem": str(exc), "chosen": chosen, "fitted": fitted}
        scenario = None
        asked_threshold, asked_alpha = _number(params.get("threshold")), _number(params.get("alpha"))
        if asked_alpha is not None:
            if not 0.0 < asked_alpha < 1.0:
                raise StudioError(400, f"α must lie strictly between 0 and 1, got {asked_alpha!r}.")
            if len(risks.risk):
                scenario = what_if(risks, threshold_for_rate(risks, asked_alpha))
        elif asked_threshold is not None:
            scenario = what_if(risks, asked_threshold)
        return {
            "chosen": chosen,
            "health": numbers,
            "histogram": _histogram(risks, rule.threshold),
            "days": _day_bars(numbers.by_day),
            "scenario": scenario,
            "asked_threshold": asked_threshold,
            "asked_alpha": asked_alpha,
            "fitted": fitted,
            "strategies": ("conformal", "false-flag", "f1"),
        }

    @app.post("/health/fit", response_class=HTMLResponse)
    async def fit(request: Request) -> Response:
        _, form = await posted(request)
        return await run_in_threadpool(fit_work, request, form)

    def fit_work(request: Request, form: dict[str, Any]) -> Response:
        from spill_guard.calibration import calibrate, from_review_log

        strategy = _text(form.get("strategy")) or "conformal"
        target = _number(form.get("target"))
        chosen = studio.log_rule()
        if not studio._fit_lock.acquire(blocking=False):
            raise StudioError(409, "a calibration is being fitted already; wait for it to finish.")
        try:
            cset = from_review_log(settings.log)
            cal = calibrate(
                studio.spill_model(),
                cset,
                spec=chosen.rule.spec,
                locator=chosen.rule.locator,
                strategy=strategy,
                target=target if strategy != "f1" else None,
            )
        except SpillGuardError as exc:
            raise StudioError(400, f"could not fit a calibration: {exc}") from None
        finally:
            studio._fit_lock.release()
        path = cal.save(settings.fitted_dir() / f"calibration-{cal.version}.json")
        fitted = {"calibration": cal, "path": path, "skipped": cset.skipped}
        return page(request, "health.html", health_context(request.query_params, fitted=fitted))

    @app.get("/calibrations/{name}")
    def download(request: Request, name: str) -> Response:
        reviewer(request)
        if not name.startswith("calibration-cal-") or not name.endswith(".json") or "/" in name or ".." in name:
            raise StudioError(404, "no such calibration file.")
        path = settings.fitted_dir() / name
        if not path.is_file():
            raise StudioError(404, "no such calibration file.")
        return FileResponse(path, media_type="application/json", filename=name)

    return app


# -- small pure helpers ---------------------------------------------------------------------
def _nonce() -> str:
    import secrets

    return secrets.token_urlsafe(24)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _number(value: Any) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise StudioError(400, f"{str(value)[:40]!r} is not a number.") from None
    if not math.isfinite(number):
        raise StudioError(400, f"{value!r} is not a finite number.")
    return number


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return str(value)


def _back_params(form: dict[str, Any]) -> dict[str, Any]:
    return {k[2:]: v for k, v in form.items() if k.startswith("f_")}


def _summary_json(s: RecordSummary) -> dict[str, Any]:
    return {
        "id": s.id,
        "created_at": s.created_at,
        "action": s.action,
        "score": s.score,
        "threshold": s.threshold,
        "rule_version": s.rule_version,
        "model": s.model,
        "question": s.question,
        "label": s.label,
        "labelled_by": s.labelled_by,
    }


def _sources(record: ReviewRecord) -> list[str]:
    """Retrieved sources a door stored in the record's metadata (``sources`` / ``documents``), as text."""
    found: list[str] = []
    for key in ("sources", "documents", "source_documents"):
        value = record.metadata.get(key)
        if isinstance(value, list):
            found += [v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)[:2000] for v in value]
        elif isinstance(value, str):
            found.append(value)
    return found


def _histogram(risks: Any, threshold: float, bins: int = 20) -> dict[str, Any] | None:
    """Counts of risk per bin for correct and incorrect answers, with SVG geometry (no inline style)."""
    import numpy as np

    if not len(risks.risk):
        return None
    finite = risks.risk[np.isfinite(risks.risk)]
    if not len(finite):
        return None
    lo, hi = float(finite.min()), float(finite.max())
    if math.isfinite(threshold):
        lo, hi = min(lo, threshold), max(hi, threshold)
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    good = np.histogram(np.clip(risks.risk[~risks.incorrect], lo, hi), edges)[0]
    bad = np.histogram(np.clip(risks.risk[risks.incorrect], lo, hi), edges)[0]
    top = max(1, int(max(good.max(initial=0), bad.max(initial=0))))
    width, height = 600, 160
    step = width / bins
    bars = []
    for i in range(bins):
        for j, (counts, kind) in enumerate(((good, "correct"), (bad, "incorrect"))):
            h = height * int(counts[i]) / top
            bars.append(
                {
                    "x": round(i * step + j * step / 2, 1),
                    "y": round(height - h, 1),
                    "w": round(step / 2 - 1, 1),
                    "h": round(h, 1),
                    "kind": kind,
                    "count": int(counts[i]),
                    "lo": float(edges[i]),
                    "hi": float(edges[i + 1]),
                }
            )
    tx = round(width * (threshold - lo) / (hi - lo), 1) if math.isfinite(threshold) else None
    return {"bars": bars, "width": width, "height": height, "lo": lo, "hi": hi, "threshold_x": tx}


def _day_bars(days: list[Any]) -> dict[str, Any] | None:
    if not days:
        return None
    shown = days[-60:]
    width, height = 600, 100
    step = width / len(shown)
    bars = [
        {
            "x": round(i * step, 1),
            "y": round(height * (1 - d.flag_rate), 1),
            "w": round(max(1.0, step - 1), 1),
            "h": round(height * d.flag_rate, 1),
            "day": d.day,
            "rate": d.flag_rate,
            "records": d.records,
        }
        for i, d in enumerate(shown)
    ]
    return {"bars": bars, "width": width, "height": height, "days": shown}
