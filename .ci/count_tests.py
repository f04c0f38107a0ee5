#!/usr/bin/env python3
"""Counts test cases in Bazel's JUnit files and prints the closing line CI reads: `N passed, N failed`.

Usage: count_tests.py TESTLOGS_DIR [TARGET_LABEL ...]
Only the test.xml of the named targets are read when labels are given (stale logs of deleted targets
stay in bazel-testlogs). Exits 1 when anything failed or when no test case ran at all.
"""

import pathlib
import sys
import xml.etree.ElementTree as ET


def xml_files(testlogs: pathlib.Path, labels: list[str]) -> list[pathlib.Path]:
    if not labels:
        return sorted(testlogs.rglob("test.xml"))
    files = []
    for label in labels:
        package, _, name = label.lstrip("@").lstrip("/").partition(":")
        files.append(testlogs / package / name / "test.xml")
    return files


def main() -> int:
    testlogs = pathlib.Path(sys.argv[1])
    passed = failed = skipped = 0
    for path in xml_files(testlogs, sys.argv[2:]):
        if not path.exists():
            print(f"missing test results: {path} (target did not run)", file=sys.stderr)
            failed += 1
            continue
        for case in ET.parse(path).iter("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                failed += 1
            elif case.find("skipped") is not None:
                skipped += 1
            else:
                passed += 1
    line = f"{passed} passed, {failed} failed"
    print(line + (f", {skipped} skipped" if skipped else ""))
    return 1 if failed or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
