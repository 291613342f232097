"""The install path: exact pins that agree everywhere, and CI running the README's command."""

import re
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CPU_INDEX = "--extra-index-url https://download.pytorch.org/whl/cpu"


def lines(path: Path) -> list[str]:
    """A requirements file's lines, without comments and blank lines."""
    stripped = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in stripped if line]


def pins(path: Path) -> dict[str, str]:
    """Package -> pinned version; every requirement must be an exact pin (==)."""
    result = {}
    for line in lines(path):
        if line.startswith("-"):
            continue
        pin = re.fullmatch(r"([A-Za-z0-9_.-]+)==([0-9][A-Za-z0-9_.+!-]*)", line)
        assert pin, f"{path.name}: {line} is not an exact pin"
        result[pin[1].lower()] = pin[2]
    return result


def public(pin: str) -> str:
    """A version without its local label: 2.13.0+cpu -> 2.13.0."""
    return pin.split("+", 1)[0]


def test_app_requirements_are_exact_pins_that_cloud_and_docker_share():
    app = pins(ROOT / "requirements.txt")
    cloud = pins(ROOT / "cloud" / "requirements.txt")
    assert set(app) == {"torch", "numpy", "plotly", "streamlit", "nbformat"}
    assert {name: public(pin) for name, pin in cloud.items()} == app
    # Both read PyTorch's CPU index; Community Cloud names the +cpu build outright.
    assert CPU_INDEX in lines(ROOT / "requirements.txt")
    assert CPU_INDEX in lines(ROOT / "cloud" / "requirements.txt")
    assert cloud["torch"].endswith("+cpu")
    # The image installs cloud/requirements.txt and nothing else.
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY cloud/requirements.txt requirements.txt" in dockerfile
    installs = re.findall(r"pip install[^\n]*", dockerfile)
    assert installs == ["pip install -r requirements.txt"], installs


def test_dev_requirements_are_the_app_plus_pinned_tools():
    assert "-r requirements.txt" in lines(ROOT / "requirements-dev.txt")
    tools = {"pytest", "hypothesis", "ruff", "playwright", "websockets"}
    tools |= {"nbclient", "ipykernel"}  # the notebook extras: running notebooks in tests
    assert set(pins(ROOT / "requirements-dev.txt")) == tools


def test_installed_versions_are_the_pinned_ones():
    """The suite runs on what the pins say (a stale environment would test something else)."""
    pinned = pins(ROOT / "requirements.txt") | pins(ROOT / "requirements-dev.txt")
    installed = {name: public(version(name)) for name in pinned}
    assert installed == {name: public(pin) for name, pin in pinned.items()}


def readme_commands() -> list[str]:
    """The two commands at the top of the README: the app, then the tests."""
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip()]


def test_ci_runs_the_readme_test_command_in_a_fresh_venv():
    app, tests = readme_commands()
    assert app.endswith("pip install -r requirements.txt && streamlit run app.py")
    assert tests.startswith("python3 -m venv .venv && . .venv/bin/activate && ")
    assert tests.endswith("pip install -r requirements-dev.txt && python -m pytest")
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert ci[-1] == tests
    assert "set -euo pipefail" in ci
    # An unreachable CPU index costs seconds, not minutes of retries.
    assert any(re.match(r"export .*PIP_RETRIES=0", line) for line in ci)
    assert any(re.match(r"export .*PIP_TIMEOUT=\d\b", line) for line in ci)
