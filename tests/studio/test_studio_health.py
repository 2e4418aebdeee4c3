"""The studio's health page and "fit a new calibration" give the numbers `spill-guard calibrate --from-log` and
`spill_guard.calibration.health` give on the same labels (a guard log of the embedded model, labelled by the
task's judge), in a real browser; and the page can be read in a screenshot."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from studio_support import ALICE, cli, running_studio, signed_in, wait_for

from spill_guard import SpillGuard
from spill_guard.calibration import Calibration
from spill_guard.review import open_log
from spill_guard.spans import make_locator
from spill_guard.tasks import judge, load_task

pytestmark = [pytest.mark.model, pytest.mark.timeout(900)]

RIGHT = ["AE", "AF", "AL", "AT", "BE", "CH", "CL", "CR", "CZ", "DO", "EE", "EG", "ER", "ET", "FI", "FR"]
WRONG = ["AS", "BS", "CC", "CG", "CX", "FJ", "FM", "GA", "GG", "GN", "GT", "GU", "GY", "HT", "IM", "JE"]


@pytest.fixture(scope="module")
def labelled_sqlite_log(spill_model, tmp_path_factory):
    wanted = {f"capital-{c}" for c in RIGHT + WRONG}
    items = [it for it in load_task("capitals") if it.id in wanted]
    path = tmp_path_factory.mktemp("health") / "guard.sqlite"
    with SpillGuard(spill_model, log=path, max_new_tokens=24) as guard:
        verdicts = guard.ask_batch([it.question for it in items])
    full = make_locator("full")
    with open_log(path) as log:
        for it, v in zip(items, verdicts):
            span = full.locate(v.original_answer)
            log.set_label(v.record_id, "correct" if span is not None and judge(span.text, it.answers) else "incorrect",
                          reviewer="judge")
    return str(path)


def number(text: str) -> float:
    return float(re.search(r"-?\d+(\.\d+)?", text).group(0))


def test_health_page_and_fit_equal_calibrate_from_log(labelled_sqlite_log, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from spill_guard.calibration.health import threshold_health
    from spill_guard.guard.risk_rule import RiskRule

    log = labelled_sqlite_log
    by_cli = tmp_path / "cli.json"
    done = cli("calibrate", "--from-log", log, "-o", str(by_cli), "--strategy", "false-flag", "--target", "0.2",
               timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    cal = Calibration.load(by_cli)
    fitted_dir = tmp_path / "fitted"
    with running_studio(log, "--calibration", str(by_cli), "--calibrations-dir", str(fitted_dir)) as base:
        from test_studio_browser import shot, sign_in_by_keyboard

        sign_in_by_keyboard(browser, base, ALICE[1])
        shot(browser, "queue")  # the docs' screenshots: a real guard log of the embedded model
        browser.get(base + "/item/" + browser.find_element(By.CSS_SELECTOR, "tr.row").get_attribute("data-id"))
        wait_for(lambda: browser.find_elements(By.ID, "heatmap"), what="the focus view")
        shot(browser, "focus")
        browser.get(base + "/health")
        wait_for(lambda: browser.find_elements(By.ID, "auroc"), what="the health numbers")
        shot(browser, "health")
        assert browser.find_element(By.ID, "rule-version").text == cal.version
        assert number(browser.find_element(By.ID, "auroc").text) == pytest.approx(cal.metrics.auroc, abs=5e-4)
        low, high = (number(x) for x in browser.find_element(By.ID, "auroc-ci").text.split("–"))
        assert (low, high) == pytest.approx(cal.metrics.auroc_ci, abs=5e-4)
        ffr = number(browser.find_element(By.ID, "false-flag-rate").text) / 100
        assert ffr == pytest.approx(cal.metrics.false_flag_rate, abs=5e-5)  # percentages are shown with 2 decimals
        health = threshold_health(log, RiskRule.of_calibration(cal, "calibration"), target=cal.target)
        assert health.metrics == cal.metrics
        ci = [number(x) / 100 for x in browser.find_element(By.ID, "false-flag-ci").text.split("–")]
        assert ci == pytest.approx(list(health.false_flag_ci), abs=5e-5)
        # What if: the false-flag target α gives the threshold the false-flag strategy fits.
        browser.find_element(By.NAME, "alpha").send_keys("0.2")
        browser.find_element(By.ID, "what-if-button").click()
        wait_for(lambda: browser.find_elements(By.ID, "what-if-result"), what="the what-if result")
        result = browser.find_element(By.ID, "what-if-result").text
        assert f"{cal.threshold:.4f}" in result
        assert number(browser.find_element(By.ID, "what-if-ffr").text) / 100 == pytest.approx(
            cal.metrics.false_flag_rate, abs=5e-5)
        assert number(browser.find_element(By.ID, "what-if-recall").text) / 100 == pytest.approx(
            cal.metrics.recall, abs=5e-5)
        # Fit: the same strategy and target as the CLI give the same calibration.
        Select(browser.find_element(By.NAME, "strategy")).select_by_value("false-flag")
        target = browser.find_element(By.NAME, "target")
        target.clear()
        target.send_keys("0.2")
        browser.find_element(By.ID, "fit-button").click()
        wait_for(lambda: browser.find_elements(By.ID, "fitted-version"), timeout=300, what="the fitted calibration")
        path = browser.find_element(By.ID, "fitted-path").text
        client, _ = signed_in(base, ALICE[1])
        downloaded = client.get(f"/calibrations/calibration-{browser.find_element(By.ID, 'fitted-version').text}.json")
        assert downloaded.status_code == 200
        assert httpx.get(f"{base}/calibrations/..%2Fguard.sqlite", cookies=client.cookies).status_code == 404
    fitted = Calibration.load(path)
    assert fitted.threshold == cal.threshold and fitted.metrics == cal.metrics
    assert fitted.sample == cal.sample and fitted.strategy == cal.strategy and fitted.target == cal.target
    assert json.loads(downloaded.text)["threshold"] == cal.threshold
