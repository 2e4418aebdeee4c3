"""The server tests need the serve extra; helpers live in serving_support.py."""

import pytest

pytest.importorskip("fastapi", reason="the server needs the serve extra: pip install 'spill-guard[serve]'")
