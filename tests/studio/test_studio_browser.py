"""The review studio in a real headless browser (Debian's chromium through Selenium), against a real
`spill-guard review serve` on loopback, over JSONL, SQLite and PostgreSQL: keyboard-only labelling, filter +
bulk label, hostile record text that must stay inert. Screenshots for the docs are taken here
(``SPILL_GUARD_SCREENSHOTS=docs/images``)."""

from __future__ import annotations

import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from studio_support import ALICE, BOB, cli, make_records, running_studio, wait_for

from spill_guard.review import open_log

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(params=["jsonl", "sqlite", "postgres"])
def location(request, tmp_path):
    if request.param == "postgres":
        return request.getfixturevalue("postgres_log_url")
    return str(tmp_path / f"guard.{request.param}")


def keys(driver, text: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(text).perform()


def sign_in_by_keyboard(driver, base: str, token: str) -> None:
    from selenium.webdriver.common.keys import Keys

    driver.get(base + "/login")
    wait_for(lambda: driver.switch_to.active_element.get_attribute("id") == "token", what="the token field's focus")
    keys(driver, token + Keys.ENTER)
    wait_for(lambda: driver.current_url.rstrip("/") == base, what="the queue after sign-in")


def shot(driver, name: str) -> None:
    folder = os.environ.get("SPILL_GUARD_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / f"studio-{name}.png"))


def test_thirty_records_labelled_by_keyboard_alone_read_back_with_review_list(browser, location):
    from selenium.webdriver.common.by import By

    with open_log(location) as sink:
        sink.write_many(make_records(30, seed=3))
    with running_studio(location) as base:
        sign_in_by_keyboard(browser, base, ALICE[1])
        keys(browser, "r")  # start reviewing: the riskiest unlabelled item
        given: dict[str, str] = {}
        for n in range(30):
            rid = wait_for(lambda: "/item/" in browser.current_url and browser.find_element(By.ID, "record-id").text,
                           what=f"item {n + 1}")
            assert rid not in given, "auto-advance handed back an item already labelled"
            choice = "correct" if int(rid, 16) % 3 else "incorrect"
            given[rid] = choice
            keys(browser, choice[0])  # c / i
            wait_for(lambda: rid not in browser.current_url, what=f"the page after labelling {rid[:8]}")
        wait_for(lambda: "Nothing+left" in browser.current_url or "Nothing left" in browser.page_source,
                 what="the empty-queue message")
    listed = cli("review", "list", "--log", location)
    assert listed.returncode == 0, listed.stderr
    seen = {}
    for line in listed.stdout.splitlines()[1:-1]:
        parts = line.split()
        seen[parts[0]] = next(p for p in parts if p in ("correct", "incorrect", "-"))
    assert seen == {rid[:8]: label for rid, label in given.items()}
    with open_log(location) as sink:
        assert {r.labelled_by for r in sink.records()} == {"alice"}


def test_filter_then_bulk_label_everything_matching(browser, location):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    with open_log(location) as sink:
        sink.write_many(make_records(40, seed=5))
        records = sink.records()
    want = {r.id for r in records if r.action == "flagged" and r.model == "model-b"}
    with running_studio(location) as base:
        sign_in_by_keyboard(browser, base, BOB[1])
        Select(browser.find_element(By.NAME, "action")).select_by_value("flagged")
        Select(browser.find_element(By.NAME, "model")).select_by_value("model-b")
        browser.find_element(By.ID, "apply-filter").click()
        wait_for(lambda: "action=flagged" in browser.current_url, what="the filtered queue")
        assert int(browser.find_element(By.ID, "total").text) == len(want) > 0
        browser.find_element(By.ID, "all-matching").click()
        Select(browser.find_element(By.ID, "bulk-label")).select_by_value("incorrect")
        browser.find_element(By.ID, "bulk-button").click()
        count = wait_for(lambda: browser.find_elements(By.ID, "confirm-count"), what="the confirmation")[0].text
        assert int(count) == len(want)
        browser.find_element(By.ID, "confirm").click()
        wait_for(lambda: f"Labelled {len(want)} records incorrect" in browser.page_source, what="the bulk result")
        assert int(browser.find_element(By.ID, "labelled").text) == len(want)
    with open_log(location) as sink:
        labelled = {r.id: (r.label, r.labelled_by) for r in sink.records() if r.label}
    assert labelled == {rid: ("incorrect", "bob") for rid in want}


class _Hits(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server's name
        _Hits.hits.append(self.path)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_two_reviewers_in_two_browsers_are_never_handed_the_same_item(browser, location):
    """Alice and Bob review side by side, each in a browser of their own, by keyboard: every item each of them
    is shown while it is leased is theirs alone, and every label carries who gave it."""
    from selenium.webdriver.common.by import By
    from studio_support import chrome

    with open_log(location) as sink:
        sink.write_many(make_records(16, seed=11))
    second = chrome()
    try:
        with running_studio(location) as base:
            sign_in_by_keyboard(browser, base, ALICE[1])
            sign_in_by_keyboard(second, base, BOB[1])
            shown: dict[str, list[str]] = {"alice": [], "bob": []}
            for driver in (browser, second):
                keys(driver, "r")
            for _ in range(8):
                for name, driver in (("alice", browser), ("bob", second)):
                    rid = wait_for(lambda d=driver: "/item/" in d.current_url and d.find_element(By.ID, "record-id").text,
                                   what=f"{name}'s item")
                    assert not driver.find_elements(By.ID, "lease-warning"), f"{name} was shown an item leased to another"
                    shown[name].append(rid)
                # Both have an item open now: the two leases must differ. Then both label.
                assert shown["alice"][-1] != shown["bob"][-1], "two reviewers were handed the same item"
                for name, driver in (("alice", browser), ("bob", second)):
                    rid = shown[name][-1]
                    keys(driver, "c" if name == "alice" else "i")
                    wait_for(lambda d=driver, r=rid: r not in d.current_url, what=f"{name}'s label")
        assert not set(shown["alice"]) & set(shown["bob"])
    finally:
        second.quit()
    with open_log(location) as sink:
        by = {r.id: (r.label, r.labelled_by) for r in sink.records()}
    assert all(by[rid] == ("correct", "alice") for rid in shown["alice"])
    assert all(by[rid] == ("incorrect", "bob") for rid in shown["bob"])
    assert sum(1 for label, _ in by.values() if label) == 16


def test_hostile_record_text_renders_inert(browser, location):
    """<script>, onerror= and javascript: payloads in the question, answer, tokens, model and note are shown as
    text: no dialog opens, no request reaches the attacker's server."""
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    trap = ThreadingHTTPServer(("127.0.0.1", 0), _Hits)
    threading.Thread(target=trap.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{trap.server_address[1]}"
    _Hits.hits.clear()
    question = f"<script>alert('q');fetch('{url}/script')</script>What is 2+2?"
    answer = f'<img src="{url}/img" onerror="alert(\'a\')">4'
    link = f'<a href="javascript:alert(\'l\')">click</a><iframe src="{url}/frame"></iframe>'
    hostile = {
        0: {"question": question, "answer": answer, "original_answer": answer, "context": link,
            "model": f'"><svg onload=alert(1)><img src={url}/model>', "tokens": ["<img src=x onerror=alert(1)>", "4"],
            "token_scores": [3.0, 0.1], "rule_version": f"<script src={url}/rule></script>",
            "metadata": {"sources": [f'<object data="{url}/obj"></object>']}},
    }
    with open_log(location) as sink:
        sink.write_many(make_records(5, seed=9, hostile=hostile))
        rid = next(r.id for r in sink.records() if r.question == question)
        sink.set_label(rid, "incorrect", note=f'<img src="{url}/note" onerror=alert(2)> javascript:alert(3)',
                       reviewer="alice", corrected_answer=f"<script>fetch('{url}/fix')</script>")
        sink.set_label(rid, "correct", reviewer="bob")
    try:
        with running_studio(location) as base:
            sign_in_by_keyboard(browser, base, ALICE[1])
            for path in ("/", f"/?q={question[:8]}", f"/item/{rid}", "/disagreements", "/health"):
                browser.get(base + path)
                wait_for(lambda: browser.execute_script("return document.readyState") == "complete", what=path)
                try:
                    alert = browser.switch_to.alert
                    raise AssertionError(f"a dialog opened on {path}: {alert.text}")
                except NoAlertPresentException:
                    pass
                if path.startswith("/item/"):
                    assert browser.find_element(By.ID, "question").text == question
                    assert browser.find_element(By.ID, "answer").text == answer
                    assert not browser.find_elements(By.CSS_SELECTOR, "main script, main img, main iframe, main object")
                    assert "javascript:alert(3)" in browser.find_element(By.ID, "history").text
            browser.get(f"{base}/item/{rid}")
            wait_for(lambda: browser.find_elements(By.ID, "label-form"), what="the label form")
            note = browser.find_element(By.ID, "note")
            note.clear()
            note.send_keys(f"<script>fetch('{url}/typed')</script>")
            browser.find_element(By.ID, "label-incorrect").click()
            wait_for(lambda: rid not in browser.current_url, what="the label to be stored")
            browser.get(f"{base}/item/{rid}")
            assert "<script>fetch(" in browser.find_element(By.ID, "history").text
        assert _Hits.hits == [], f"the page fired requests to the attacker's server: {_Hits.hits}"
    finally:
        trap.shutdown()
