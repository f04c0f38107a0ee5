"""Runs the pytest files of one py_test target and writes Bazel's JUnit test.xml.

Bazel passes the test's source files in $OTA_PYTEST_FILES (runfiles-relative), so each target runs
exactly its own files, and each test case appears in bazel-testlogs/**/test.xml for CI to count.
"""

import os
import sys

import pytest


def main() -> int:
    files = os.environ["OTA_PYTEST_FILES"].split()
    args = ["-p", "no:cacheprovider", "-q", "-ra"]
    xml = os.environ.get("XML_OUTPUT_FILE")
    if xml:
        args.append("--junitxml=" + xml)
    # pytest's own temp dirs go where Bazel wants test files (cleaned per run, never the source tree).
    tmp = os.environ.get("TEST_TMPDIR")
    if tmp:
        args += ["--basetemp", os.path.join(tmp, "pytest")]
    status = pytest.main(args + files)
    # pytest exits 5 when a file holds no tests: for Bazel that is a broken target, not a pass.
    return int(status)


if __name__ == "__main__":
    sys.exit(main())
