"""CI cannot test less than it reports: under CI a test whose machine lacks what it needs fails
(tests/environment.py), elsewhere it skips with the reason; and .ci/count_tests.py counts any skip
that still reaches CI's results as a failure.

Each case generates a test module (requirements met or missing, inside a test or at module level),
runs it under a generated CI value in a real pytest process, and checks both the JUnit outcome of
every test and what count_tests.py makes of that file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

COUNT_TESTS = Path(__file__).resolve().parents[2] / ".ci" / "count_tests.py"
if not COUNT_TESTS.exists():  # under Bazel __file__ resolves into the source tree only via runfiles
    COUNT_TESTS = Path(__file__).absolute().parents[2] / ".ci" / "count_tests.py"

NOT_CI = [None, "", "0", "false", "False", " FALSE "]
CI = ["true", "TRUE", "1", "yes"]
# What a machine may lack, as require() callers phrase it; printable text including quotes and '<&>'.
missing_phrases = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E, blacklist_characters="\\"), min_size=1, max_size=40
).map(lambda s: s.strip() or "x")


def run_pytest(work: Path, files: list[Path], ci: str | None) -> Path:
    """Runs pytest on `files` as Bazel would (JUnit XML); returns the XML's path."""
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    xml = work / "testlogs" / "tests" / "generated_test" / "test.xml"
    xml.parent.mkdir(parents=True)
    # --continue-on-collection-errors: the module-level failure must not hide the other file's cases.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            f"--junitxml={xml}",
            "--continue-on-collection-errors",
            *map(str, files),
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return xml


def outcome(case: ET.Element) -> tuple[str, str]:
    for kind in ("failure", "error", "skipped"):
        found = case.find(kind)
        if found is not None:
            return kind, f"{found.get('message', '')} {found.text or ''}"
    return "passed", ""


# Each example is a pytest process (~1-3 s): a fixed set, and the first failure as found (no shrinking).
@settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@example(ci="true", needs=[None, "a loop device", "quotes \"' and <&>"], module_missing="root")
@example(ci=None, needs=["a loop device", None], module_missing="/usr/bin/abootimg missing")
@example(ci="false", needs=[None], module_missing=None)
@given(
    ci=st.sampled_from(NOT_CI + CI),
    needs=st.lists(st.none() | missing_phrases, min_size=1, max_size=5),
    module_missing=st.none() | missing_phrases,
)
def test_missing_requirement_skips_outside_ci_and_fails_in_ci(tmp_path_factory, ci, needs, module_missing):
    work = tmp_path_factory.mktemp("run")
    body = ["from tests.environment import require", ""]
    for index, missing in enumerate(needs):
        body += [f"def test_case_{index}():", f"    require({missing!r})", ""]
    (work / "test_in_test.py").write_text("\n".join(body))
    (work / "test_at_module.py").write_text(
        f"from tests.environment import require\nrequire({module_missing!r})\n\ndef test_module_case():\n    pass\n"
    )
    xml = run_pytest(work, [work / "test_in_test.py", work / "test_at_module.py"], ci)

    under_ci = ci in CI
    cases = {c.get("name"): outcome(c) for c in ET.parse(xml).iter("testcase")}
    expected_kinds = {}
    for index, missing in enumerate(needs):
        kind, text = cases.pop(f"test_case_{index}")
        expected_kinds[kind] = expected_kinds.get(kind, 0) + 1
        if missing is None:
            assert kind == "passed"
        else:
            assert kind == ("failure" if under_ci else "skipped"), (ci, missing, kind, text)
            assert f"cannot run: {missing}" in text
            assert ("CI must run every test" in text) == under_ci
    # The module-level requirement: a collection error under CI, a skipped module elsewhere.
    ((name, (kind, text)),) = cases.items()
    if module_missing is None:
        assert (name, kind) == ("test_module_case", "passed")
    else:
        assert kind == ("error" if under_ci else "skipped"), (ci, module_missing, kind, text)
        assert f"cannot run: {module_missing}" in text
    expected_kinds[kind] = expected_kinds.get(kind, 0) + 1

    counted = subprocess.run(
        [sys.executable, str(COUNT_TESTS), str(work / "testlogs")], capture_output=True, text=True, check=False
    )
    passed = expected_kinds.get("passed", 0)
    not_passed = sum(n for k, n in expected_kinds.items() if k != "passed")
    assert counted.stdout == f"{passed} passed, {not_passed} failed\n"
    assert counted.returncode == (0 if passed and not not_passed else 1)
    skip_lines = [line for line in counted.stderr.splitlines() if line.startswith("skipped, counted as failed")]
    assert len(skip_lines) == expected_kinds.get("skipped", 0)
    assert all("tests/generated_test: " in line and "cannot run: " in line for line in skip_lines)
