"""ota_test's device really requires a signature by a key it trusts.

//tests/rules:fixture_ota_test shows a signed package passing on a device that trusts the TEST
key. Here ota_test_main runs on copies of that test's spec with one thing changed, and must fail:
the unsigned fixture package, or a device trusting only another key. Without this a device that
skipped the check would pass every ota_test.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

from cryptography.hazmat.primitives.asymmetric import ed25519

from ota.format import signing

REPO = pathlib.Path(__file__).absolute().parents[2]  # not resolve(): stay inside Bazel runfiles
HERE = REPO / "tests/rules"
TEST_KEY_ID = "5ef43117130f6ea998f86a374f063b1b1b9b173fad1e3955d56afa7399bf477b"


def _run(tmp_path: pathlib.Path, **changes: object) -> subprocess.CompletedProcess:
    """ota_test_main on the fixture spec with `changes`, no interruptions; cwd = runfiles root."""
    spec = json.loads((HERE / "fixture_ota_test_spec.json").read_text())
    assert spec["package"] == "tests/rules/fixture_signed.zip"
    assert spec["trusted_keys"] == ["release/keys/TEST_ONLY_ota_ed25519.pub.pem"]
    spec.update(changes, interrupt=False)
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return subprocess.run(
        [sys.executable, "-m", "ota.testing.ota_test_main", f"--spec={path}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "TEST_TMPDIR": str(tmp_path)},
    )


def test_signed_package_passes_without_interruptions(tmp_path) -> None:
    proc = _run(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert ", signature required\n" in proc.stdout
    assert proc.stdout.endswith(
        "ok: the device is the target build (files, modes, owners, symlinks, directories, partitions)\n"
    )


def test_unsigned_package_is_refused(tmp_path) -> None:
    proc = _run(tmp_path, package="tests/rules/fixture_incremental.zip")
    assert proc.returncode == 1
    assert (
        "FAIL: apply failed: tests/rules/fixture_incremental.zip: unsigned: no META-INF/ota/signature entry\n"
    ) in proc.stderr


def test_package_signed_by_an_untrusted_key_is_refused(tmp_path) -> None:
    other = tmp_path / "other.pub.pem"
    other.write_bytes(signing.public_key_pem(ed25519.Ed25519PrivateKey.from_private_bytes(bytes(32))))
    proc = _run(tmp_path, trusted_keys=[str(other)])
    assert proc.returncode == 1
    assert (
        "FAIL: apply failed: tests/rules/fixture_signed.zip: unknown key: signed only by keys the "
        f"device does not trust ({TEST_KEY_ID})\n"
    ) in proc.stderr
