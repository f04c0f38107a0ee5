#!/usr/bin/env python3
"""Counts test cases in Bazel's JUnit files and prints the closing line CI reads: `N passed, N failed`.

Usage: count_tests.py TESTLOGS_DIR [TARGET_LABEL ...]
Only the test.xml of the named targets are read when labels are given (stale logs of deleted targets
stay in bazel-testlogs). Exits 1 when anything failed or when no test case ran at all.

A skipped test case counts as failed, and each one is listed on stderr with its reason. No skip is
allowed in CI: every test in this repository can run on the CI machine (root, loop devices, the tools
bootstrap.sh installs), and tests/environment.py turns a missing requirement into a failure under CI.
A skip that still reaches these results bypassed that helper and left something untested.
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
    passed = failed = 0
    skips = []
    for path in xml_files(testlogs, sys.argv[2:]):
        if not path.exists():
            print(f"missing test results: {path} (target did not run)", file=sys.stderr)
            failed += 1
            continue
        for case in ET.parse(path).iter("testcase"):
            skipped = case.find("skipped")
            if case.find("failure") is not None or case.find("error") is not None:
                failed += 1
            elif skipped is not None:
                # pytest puts a test's skip reason in `message` (the text repeats it with the place);
                # a skipped module's message is "collection skipped" and its reason is in the text.
                reason, text = skipped.get("message") or "", (skipped.text or "").strip()
                if reason not in text:
                    reason = f"{reason} {text}".strip()
                skips.append(f"{path.parent.relative_to(testlogs)}: {case.get('name')}: {reason}")
            else:
                passed += 1
    for skip in skips:
        print(f"skipped, counted as failed (CI must run every test): {skip}", file=sys.stderr)
    failed += len(skips)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
