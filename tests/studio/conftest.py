"""The review studio's tests need its extra (``review-ui``); helpers live in studio_support.py."""

import pytest

pytest.importorskip("fastapi", reason="the studio needs the review-ui extra: pip install 'spill-guard[review-ui]'")
pytest.importorskip("jinja2", reason="the studio needs the review-ui extra: pip install 'spill-guard[review-ui]'")


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium, headless, through chromedriver (both installed by `make test`)."""
    from studio_support import chrome

    driver = chrome()
    yield driver
    driver.quit()
