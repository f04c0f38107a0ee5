"""What a test needs from the machine (root, loop devices, the Debian tools bootstrap.sh installs),
decided in one place, so that CI cannot quietly test less than it reports.

On a developer's machine a missing requirement skips the test and says why. Under CI (the CI
variable set, as .ci/run does; .bazelrc passes it into Bazel's tests with --test_env=CI) the same
test FAILS and names what the machine lacks: CI runs as root, unsandboxed where a test is tagged
"no-sandbox", after bootstrap.sh installed every tool, so a skip there means a broken CI machine or
a wrong tag, never a test that may be left out. .ci/count_tests.py fails the run on any skip that
still reaches CI's results.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def in_ci() -> bool:
    """True when the CI variable says so (CI systems set CI=true; "", "0" and "false" mean no)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false")


def require(missing: str | None) -> None:
    """Skips the running test (or test module) when `missing` names what it lacks; fails it in CI.

    `missing` is None when everything is there, else a phrase that completes "cannot run: ...".
    """
    if missing is None:
        return
    if in_ci():
        pytest.fail(f"cannot run: {missing}; CI must run every test (CI is set: a skip would hide this)", pytrace=False)
    pytest.skip(f"cannot run: {missing}", allow_module_level=True)


def root_missing(what: str) -> str | None:
    """None as root; else why `what` (e.g. "giving a file another owner") cannot run."""
    return None if os.geteuid() == 0 else f"{what} needs root"


def tools_missing(*paths: str, package: str) -> str | None:
    """None when every tool in `paths` exists; else which are missing and the Debian package to install."""
    missing = [p for p in paths if not Path(p).exists()]
    if not missing:
        return None
    return f"{', '.join(missing)} missing (Debian's {package}, installed by bootstrap.sh)"
