"""In CI, a skipped test fails the run unless ALLOWED_SKIPS names it, with the reason it may skip.

A skip in CI usually means a check silently stopped running (a tool not on PATH, a browser not
installed, a test that cannot run as root), so CI reports it as a failure instead of a "passed".
"""

import os

import pytest

# Test id (without parameters) -> why it may skip in CI. Empty: no test may skip in CI.
# Not here on purpose: the /proc test in test_server_sessions.py (CI runs on Linux, it never
# skips there) and the read-only folder test in test_datasets.py (it must run as root too).
ALLOWED_SKIPS: dict[str, str] = {}


class SkipGuard:
    """Records skips and turns a passing session into a failing one if any was unexpected."""

    def __init__(self, allowed: dict[str, str]):
        self.allowed = allowed
        self.unexpected: list[str] = []

    def _record(self, report) -> None:
        if report.skipped and not hasattr(report, "wasxfail"):
            if report.nodeid.split("[", 1)[0] not in self.allowed:
                reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
                self.unexpected.append(f"{report.nodeid}: {reason}")

    def pytest_runtest_logreport(self, report):
        self._record(report)

    def pytest_collectreport(self, report):  # a whole module skipped
        self._record(report)

    def pytest_sessionfinish(self, session):
        if self.unexpected and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter):
        if self.unexpected:
            terminalreporter.write_line(
                f"{len(self.unexpected)} unexpected skip(s) in CI, which fail the run "
                "(fix them, or add them to ALLOWED_SKIPS in tests/skip_guard.py with a reason):",
                red=True,
            )
            for line in self.unexpected:
                terminalreporter.write_line(f"  {line}")


def install(config, allowed: dict[str, str] = ALLOWED_SKIPS) -> None:
    """Guard this session against unexpected skips when CI is set."""
    if os.environ.get("CI"):
        config.pluginmanager.register(SkipGuard(allowed), "skip_guard")
