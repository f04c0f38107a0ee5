"""The foundation every tool stands on: generated manifest code, pinned runtime, exit-code discipline."""

import hashlib
import subprocess
import sys
import textwrap

import bsdiff4
import google.protobuf

from ota.errors import OtaError
from ota.proto import ota_manifest_pb2


def test_manifest_gencode_matches_runtime_and_serializes_deterministically():
    manifest = ota_manifest_pb2.OtaManifest(format_version=2, type=ota_manifest_pb2.OtaManifest.INCREMENTAL)
    manifest.precondition.device.append("example")
    for path in (b"z/last", b"a/first"):
        op = manifest.files.add(path=path, op=ota_manifest_pb2.FileOperation.PATCH)
        op.target.sha256 = hashlib.sha256(path).digest()
    first = manifest.SerializeToString(deterministic=True)
    again = ota_manifest_pb2.OtaManifest.FromString(first).SerializeToString(deterministic=True)
    assert first == again
    assert google.protobuf.__version__ == "7.36.2"


def test_bsdiff4_extension_loads():
    old, new = b"abcdefgh" * 100, b"abcdXfgh" * 100
    assert bsdiff4.patch(old, bsdiff4.diff(old, new)) == new


def test_ota_error_is_one_line():
    err = OtaError("boot.img", "header field\nkernel_size is\t 99 bytes past the end")
    assert str(err) == "boot.img: header field kernel_size is 99 bytes past the end"


def test_cli_exit_codes(tmp_path):
    script = tmp_path / "tool.py"
    script.write_text(
        textwrap.dedent("""
        import sys
        from absl import flags
        from ota.io import runner
        from ota.errors import OtaError
        flags.DEFINE_string("mode", "ok", "what to do")
        def main(argv):
            if flags.FLAGS.mode == "fail":
                raise OtaError("input.bin", "magic is not BSDIFF40")
            return 0
        runner.run_absl("tool", main)
    """)
    )
    ok = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    fail = subprocess.run([sys.executable, str(script), "--mode=fail"], capture_output=True, text=True, check=False)
    assert fail.returncode == 1
    assert fail.stderr == "tool: error: input.bin: magic is not BSDIFF40\n"
    usage = subprocess.run([sys.executable, str(script), "--no_such_flag"], capture_output=True, text=True, check=False)
    assert usage.returncode == 2
    assert "no_such_flag" in usage.stderr


def test_help_exits_zero_and_describes_flags(tmp_path):
    script = tmp_path / "tool.py"
    script.write_text(
        textwrap.dedent("""
        from absl import flags
        from ota.io import runner
        flags.DEFINE_string("mode", "ok", "what to do")
        runner.run_absl("tool", lambda argv: 0)
    """)
    )
    shown = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, check=False)
    assert shown.returncode == 0
    assert "--mode: what to do" in shown.stdout
