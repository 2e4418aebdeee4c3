"""Without langchain-core, importing the integration fails with an ImportError naming the install."""

from __future__ import annotations

import subprocess
import sys

BLOCKER = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "langchain_core" or name.startswith("langchain_core."):
            raise ImportError(f"No module named {name!r} (blocked by the test)")
        return None
sys.meta_path.insert(0, Block())
try:
    import spill_guard_langchain
except ImportError as exc:
    print(exc)
    sys.exit(0)
sys.exit("imported without langchain_core")
"""


def test_missing_langchain_core_names_the_package_to_install():
    done = subprocess.run([sys.executable, "-c", BLOCKER], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "pip install spill-guard-langchain" in done.stdout
    assert "pip install -e integrations/langchain" in done.stdout
