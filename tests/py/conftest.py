"""Shared pytest helpers for tests/py: the repository root, the gomlx binary
($GOMLX_BIN, default build/gomlx) and a runner for it, plus a closing summary
of the tests that were not run as expected failures (for example fixtures of
architectures the engine does not support yet), so none passes silently.

Tests may use the fixtures (`repo_root`, `gomlx_bin`) or import the plain
functions: `from conftest import ROOT, gomlx_bin, run_gomlx`.
"""
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def gomlx_bin():
    """Path of the gomlx binary; fails the calling test when it is missing."""
    path = os.environ.get("GOMLX_BIN", os.path.join(ROOT, "build", "gomlx"))
    if not os.path.isabs(path):
        path = os.path.join(ROOT, path)
    if not os.path.isfile(path):
        pytest.fail("gomlx binary not found at %s: build it (make build) or set GOMLX_BIN" % path)
    return path


def run_gomlx(args, timeout=600, check=True, stdin=None):
    """Runs `gomlx ARGS...` from the repository root and returns the
    CompletedProcess (stdout/stderr as text). With check, a non-zero exit
    fails the test with the command and its stderr."""
    cmd = [gomlx_bin()] + [str(a) for a in args]
    p = subprocess.run(cmd, cwd=ROOT, input=stdin, capture_output=True, text=True,
                       encoding="utf-8", errors="replace", timeout=timeout)
    if check and p.returncode != 0:
        shown = " ".join(cmd)
        if len(shown) > 300:
            shown = shown[:300] + " ..."
        pytest.fail("%s\nexit %d\nstderr:\n%s" % (shown, p.returncode, p.stderr[-4000:]))
    return p


@pytest.fixture(scope="session")
def repo_root():
    return ROOT


@pytest.fixture
def gomlx():
    """The gomlx binary path (fails the test when it is missing)."""
    return gomlx_bin()


def pytest_terminal_summary(terminalreporter):
    xfailed = terminalreporter.stats.get("xfailed", [])
    if not xfailed:
        return
    terminalreporter.section("not run / expected failures")
    for rep in xfailed:
        reason = getattr(rep, "wasxfail", "") or ""
        terminalreporter.write_line("%s: %s" % (rep.nodeid, reason))
