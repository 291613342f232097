import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed")
@pytest.mark.parametrize("command", [["ruff", "check", "."], ["ruff", "format", "--check", "."]])
def test_ruff_clean(command):
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_backend_never_imports_streamlit():
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "bnviz").rglob("*.py")
        if "ui" not in path.relative_to(ROOT / "bnviz").parts
        and any(
            line.strip().startswith(("import streamlit", "from streamlit"))
            for line in path.read_text().splitlines()
        )
    ]
    assert offenders == []
