"""The skip guard (tests/skip_guard.py), run on small suites of its own in a fresh pytest."""

import pytest

SUITE = """
import pytest

def test_runs():
    pass

@pytest.mark.skipif(True, reason="no widget here")
def test_skipped():
    pass

@pytest.mark.parametrize("n", [1, 2])
def test_skipped_inside(n):
    pytest.skip("not today")

@pytest.mark.xfail(reason="known bug")
def test_known_bug():
    assert False
"""


def run(pytester, monkeypatch, ci: str | None, allowed: dict[str, str], suite: str = SUITE):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    pytester.makeconftest(
        f"import skip_guard\ndef pytest_configure(config):\n"
        f"    skip_guard.install(config, {allowed!r})\n"
    )
    pytester.makepyfile(test_suite=suite)
    return pytester.runpytest("-p", "no:cacheprovider", "-rs")


def test_an_unexpected_skip_fails_the_run_in_ci(pytester, monkeypatch):
    result = run(pytester, monkeypatch, "true", {"test_suite.py::test_skipped": "no widgets"})
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1, skipped=3, xfailed=1)
    result.stdout.fnmatch_lines(
        [
            "2 unexpected skip(s) in CI*",
            "  test_suite.py::test_skipped_inside[[]1[]]: *not today",
            "  test_suite.py::test_skipped_inside[[]2[]]: *not today",
        ]
    )
    assert "test_suite.py::test_skipped:" not in result.stdout.str()  # allow-listed


def test_allow_listed_skips_and_xfails_pass_in_ci(pytester, monkeypatch):
    allowed = {"test_suite.py::test_skipped": "a", "test_suite.py::test_skipped_inside": "b"}
    result = run(pytester, monkeypatch, "1", allowed)
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=1, skipped=3, xfailed=1)


def test_skips_pass_outside_ci(pytester, monkeypatch):
    for ci in (None, ""):
        result = run(pytester, monkeypatch, ci, {})
        assert result.ret == pytest.ExitCode.OK
        assert "unexpected skip" not in result.stdout.str()


def test_a_skipped_module_fails_the_run_in_ci(pytester, monkeypatch):
    suite = "import pytest\npytest.skip('no module today', allow_module_level=True)\n"
    result = run(pytester, monkeypatch, "1", {}, suite)
    assert result.ret != pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["  test_suite.py: *no module today"])
