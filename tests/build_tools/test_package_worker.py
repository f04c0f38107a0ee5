"""The package assembler as a persistent worker (OtaPackage runs in one, as the patch actions do):
each request's package must be the one-shot tool's bytes, a failing request must get the one-shot
message and leave the worker serving, and nothing of one request may reach the next.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import package_fixture as fx
from build_helpers import run_ok, run_tool, tool_env
from ota.actions import persistent_worker
from ota.proto import worker_protocol_pb2 as pb


def _send(proc: subprocess.Popen, args: list[str]) -> pb.WorkResponse:
    request = pb.WorkRequest(arguments=args, inputs=[pb.Input(path="x", digest=b"\1")])
    persistent_worker.write_message(proc.stdin, request.SerializeToString())
    message = persistent_worker.read_message(proc.stdout)
    assert message is not None, proc.stderr.read().decode()
    return pb.WorkResponse.FromString(message)


def test_worker_packages_are_the_one_shot_bytes(tmp_path: Path) -> None:
    fx.build_inputs(tmp_path)
    run_ok("ota.actions.package_writer", "--params", "params.json", "--out", "oneshot.zip", cwd=tmp_path)
    missing = run_tool("ota.actions.package_writer", "--params", "nothing.json", "--out", "x.zip", cwd=tmp_path)
    requests = [
        ["--params", "params.json", "--out", "first.zip"],
        ["--params", "nothing.json", "--out", "x.zip"],
        ["--out", "no_params.zip"],  # --params of the first request must not be left over
        ["--params", "params.json", "--out", "second.zip"],
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "ota.actions.package_writer", "--persistent_worker"],
        cwd=tmp_path,
        env=tool_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        responses = [_send(proc, args) for args in requests]
    finally:
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
    assert [r.exit_code for r in responses] == [0, 1, 2, 0]
    assert responses[1].output == missing.stderr and missing.returncode == 1
    assert "--params and --out are required" in responses[2].output
    expected = (tmp_path / "oneshot.zip").read_bytes()
    assert (tmp_path / "first.zip").read_bytes() == expected
    assert (tmp_path / "second.zip").read_bytes() == expected
    assert not (tmp_path / "x.zip").exists() and not (tmp_path / "no_params.zip").exists()
