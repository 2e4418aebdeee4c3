"""The review studio over real HTTP (a real `spill-guard review serve` process on loopback), on every sink:
sign-in, CSRF and reviewer tokens, read-only mode, security headers, filters, leases, bulk labels."""

from __future__ import annotations

import re
import threading

import httpx
import pytest
from studio_support import ALICE, BOB, CAROL, make_records, running_studio, signed_in

from spill_guard.review import open_log


@pytest.fixture(params=["jsonl", "sqlite", "postgres"])
def log(request, tmp_path):
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_log_url")
        location = url
    else:
        location = str(tmp_path / f"guard.{request.param}")
    with open_log(location) as sink:
        sink.write_many(make_records(60))
    return location


def labels_of(location: str) -> dict[str, tuple]:
    with open_log(location) as sink:
        return {r.id: (r.label, r.labelled_by) for r in sink.records()}


def test_state_changes_need_a_reviewer_and_the_csrf_token(log):
    first = make_records(1)[0]  # ids are random: pick one from the log
    with open_log(log) as sink:
        rid = sink.records()[0].id
    before = labels_of(log)
    with running_studio(log) as base:
        anonymous = httpx.post(f"{base}/item/{rid}/label", data={"label": "correct"})
        assert anonymous.status_code == 401
        wrong_token = httpx.post(f"{base}/api/label", data={"id": rid, "label": "correct"},
                                 headers={"Authorization": "Bearer not-a-reviewer-token-at-all"})
        assert wrong_token.status_code == 401
        client, csrf = signed_in(base, ALICE[1])
        without = client.post(f"/item/{rid}/label", data={"label": "correct"})
        assert without.status_code == 403 and "CSRF" in without.text
        forged = client.post(f"/item/{rid}/label", data={"label": "correct", "csrf": csrf[:-2] + "xx"})
        assert forged.status_code == 403
        assert labels_of(log) == before, "a refused request must not label"
        ok = client.post(f"/item/{rid}/label", data={"label": "incorrect", "csrf": csrf, "note": "mail me at a@b.org"})
        assert ok.status_code == 303
        by_token = httpx.post(f"{base}/api/label", data={"id": rid, "label": "correct"},
                              headers={"Authorization": f"Bearer {BOB[1]}"})
        assert by_token.status_code == 200 and by_token.json()["labelled_by"] == "bob"
    with open_log(log) as sink:
        events = sink.label_events(rid)
        record = sink.get(rid)
    assert [(e.label, e.reviewer) for e in events] == [("incorrect", "alice"), ("correct", "bob")]
    assert "a@b.org" not in (events[0].note or ""), "notes are redacted before they are stored"
    assert record.label == "correct" and record.labelled_by == "bob"
    assert first.question  # the hand-built records are what the log holds


def test_pages_carry_a_strict_csp_and_no_inline_script_or_style(log):
    with open_log(log) as sink:
        rid = sink.records()[0].id
    with running_studio(log) as base:
        client, _ = signed_in(base, ALICE[1])
        for path in ("/", f"/item/{rid}", "/disagreements", "/health", "/login"):
            r = client.get(path)
            assert r.status_code == 200, (path, r.text[:300])
            csp = r.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
            assert r.headers["x-frame-options"] == "DENY"
            html = r.text
            assert not re.search(r"<script(?![^>]*\bsrc=)", html), f"inline script on {path}"
            assert " style=" not in html and "<style" not in html, f"inline style on {path}"
            assert not re.search(r"\son[a-z]+=", html), f"event-handler attribute on {path}"


def test_read_only_studio_refuses_every_label(log):
    with open_log(log) as sink:
        rid = sink.records()[0].id
    with running_studio(log, "--read-only") as base:
        client, csrf = signed_in(base, ALICE[1])
        assert client.get(f"/item/{rid}").status_code == 200
        refused = client.post(f"/item/{rid}/label", data={"label": "correct", "csrf": csrf})
        assert refused.status_code == 403 and "read-only" in refused.text
        api = httpx.post(f"{base}/api/label", data={"id": rid, "label": "correct"},
                         headers={"Authorization": f"Bearer {ALICE[1]}"})
        assert api.status_code == 403
    assert all(label is None for label, _ in labels_of(log).values())


def test_filters_paging_and_progress_match_the_records(log):
    with open_log(log) as sink:
        records = sink.records()
    with running_studio(log) as base:
        headers = {"Authorization": f"Bearer {ALICE[1]}"}
        flagged = httpx.get(f"{base}/api/queue", params={"action": "flagged", "model": "model-a", "limit": 7},
                            headers=headers).json()
        want = [r for r in records if r.action == "flagged" and r.model == "model-a"]
        assert flagged["total"] == len(want) and len(flagged["items"]) == min(7, len(want))
        scores = [item["score"] for item in flagged["items"]]
        assert scores == sorted(scores, reverse=True), "riskiest first by default"
        ranged = httpx.get(f"{base}/api/queue", params={"min_risk": 0, "max_risk": 0.5, "sort": "time", "limit": 500},
                           headers=headers).json()
        assert [i["id"] for i in ranged["items"]] == [
            r.id for r in sorted(records, key=lambda r: r.created_at) if r.score is not None and 0 <= r.score <= 0.5]
        text = httpx.get(f"{base}/api/queue", params={"q": "NUMBER 7:"}, headers=headers).json()
        assert [i["id"] for i in text["items"]] == [r.id for r in records if "number 7:" in r.question.lower()]
        since = httpx.get(f"{base}/api/queue", params={"since": "2026-11-25", "until": "2026-11-26"},
                          headers=headers).json()
        assert since["total"] == sum("2026-11-25" <= r.created_at < "2026-11-26" for r in records)
        bad = httpx.get(f"{base}/api/queue", params={"min_risk": "1", "max_risk": "0"}, headers=headers)
        assert bad.status_code == 400 and "max_risk" in bad.json()["error"]
        page2 = httpx.get(f"{base}/api/queue", params={"offset": 50, "limit": 50}, headers=headers).json()
        assert page2["total"] == 60 and len(page2["items"]) == 10


def test_two_reviewers_at_once_are_never_leased_the_same_item(log):
    with running_studio(log) as base:
        handed: dict[str, list[str]] = {"alice": [], "bob": []}
        errors: list[str] = []

        def review(name: str, token: str) -> None:
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
                for _ in range(12):
                    got = client.get("/api/next", params={"label": "unlabelled"}).json()["id"]
                    if got is None:
                        return
                    handed[name].append(got)
                    r = client.post("/api/label", data={"id": got, "label": "correct" if name == "alice" else "incorrect"})
                    if r.status_code != 200:
                        errors.append(r.text)

        threads = [threading.Thread(target=review, args=who) for who in (ALICE, BOB)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert len(handed["alice"]) == len(handed["bob"]) == 12
        assert not set(handed["alice"]) & set(handed["bob"]), "an item was leased to both reviewers"
        # A held lease keeps the item from the other reviewer until it is labelled or released.
        a = httpx.get(f"{base}/api/next", headers={"Authorization": f"Bearer {ALICE[1]}"}).json()["id"]
        b = httpx.get(f"{base}/api/next", headers={"Authorization": f"Bearer {BOB[1]}"}).json()["id"]
        assert a != b
    labels = labels_of(log)
    assert {rid for rid, (label, _) in labels.items() if label} == set(handed["alice"]) | set(handed["bob"])
    assert all(labels[rid] == ("correct", "alice") for rid in handed["alice"])


def test_bulk_label_confirms_the_count_and_refuses_a_changed_selection(log):
    with running_studio(log) as base:
        client, csrf = signed_in(base, CAROL[1])
        confirm = client.get("/bulk", params={"action": "abstained", "all": "1", "give": "incorrect"})
        assert confirm.status_code == 200
        count = int(re.search(r'id="confirm-count">(\d+)<', confirm.text).group(1))
        with open_log(log) as sink:
            abstained = [r.id for r in sink.records() if r.action == "abstained"]
        assert count == len(abstained) > 0
        stale = client.post("/bulk", data={"csrf": csrf, "give": "incorrect", "all": "1", "f_action": "abstained",
                                           "expected": str(count + 1)})
        assert stale.status_code == 409
        done = client.post("/bulk", data={"csrf": csrf, "give": "incorrect", "all": "1", "f_action": "abstained",
                                          "expected": str(count)})
        assert done.status_code == 303 and f"Labelled+{count}+records" in done.headers["location"]
    labels = labels_of(log)
    assert {rid for rid, (label, _) in labels.items() if label == "incorrect"} == set(abstained)
    assert all(labels[rid][1] == "carol" for rid in abstained)


def test_disagreements_list_records_two_reviewers_labelled_differently(log):
    with open_log(log) as sink:
        ids = [r.id for r in sink.records()[:3]]
        sink.set_label(ids[0], "correct", reviewer="alice")
        sink.set_label(ids[0], "incorrect", reviewer="bob")
        sink.set_label(ids[1], "correct", reviewer="alice")
        sink.set_label(ids[1], "correct", reviewer="bob")
        sink.set_label(ids[2], "incorrect", reviewer="alice")
    with running_studio(log) as base:
        client, _ = signed_in(base, ALICE[1])
        page = client.get("/disagreements").text
    rows = re.findall(r'<tr data-id="([0-9a-f]+)">', page)
    assert rows == [ids[0]]


def test_an_unknown_record_and_a_bad_filter_get_a_page_not_a_traceback(log):
    with running_studio(log) as base:
        client, _ = signed_in(base, ALICE[1])
        missing = client.get("/item/ffffffffffffffff")
        assert missing.status_code == 404 and "Traceback" not in missing.text
        bad = client.get("/", params={"since": "yesterday"})
        assert bad.status_code == 400 and "2026-12-06" in bad.text and "Traceback" not in bad.text
