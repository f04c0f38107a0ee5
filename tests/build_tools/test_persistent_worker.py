"""The file_patch persistent worker: Bazel's protocol round trip against a real worker process.

Requests go in as Bazel 4.2.3 sends them (varint length + WorkRequest on stdin); each response
must carry the exit code and stderr the one-shot tool gives for the same command line, and the
outputs must be the one-shot tool's bytes. A failing request must not end the worker, and no flag
of one request may reach the next.
"""

from __future__ import annotations

import io
import random
import subprocess
import sys
from pathlib import Path

import pytest

from build_helpers import run_tool, tool_env
from ota.actions import persistent_worker
from ota.errors import OtaError
from ota.proto import worker_protocol_pb2 as pb


def _binary(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    """Source and target files of a few kinds, relative to tmp_path (the worker's cwd)."""
    old = _binary(1, 60_000)
    (tmp_path / "old.bin").write_bytes(old)
    (tmp_path / "new.bin").write_bytes(old[:20_000] + b"an edit in the middle" + old[20_000:])
    (tmp_path / "same.bin").write_bytes(old)
    (tmp_path / "other.bin").write_bytes(_binary(2, 5_000))
    return tmp_path


def _args(name: str, target: str, source: str | None = None, *extra: str) -> list[str]:
    args = ["--source", source] if source else []
    return args + [
        "--target",
        target,
        "--path",
        f"system/{name}",
        "--out_data",
        f"{name}.p",
        "--out_info",
        f"{name}.json",
        *extra,
    ]


class Worker:
    """A worker process speaking the protocol on pipes, as Bazel starts it."""

    def __init__(self, cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ota.actions.file_patch", "--persistent_worker"],
            cwd=cwd,
            env=tool_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def send(self, args: list[str], request_id: int = 0) -> pb.WorkResponse:
        request = pb.WorkRequest(arguments=args, request_id=request_id, inputs=[pb.Input(path="x", digest=b"\1")])
        persistent_worker.write_message(self.proc.stdin, request.SerializeToString())
        message = persistent_worker.read_message(self.proc.stdout)
        assert message is not None, self.proc.stderr.read().decode()
        return pb.WorkResponse.FromString(message)

    def close(self) -> tuple[int, str]:
        self.proc.stdin.close()
        code = self.proc.wait(timeout=30)
        rest = self.proc.stdout.read()
        assert rest == b"", rest  # nothing but responses ever reaches stdout
        return code, self.proc.stderr.read().decode()


def test_requests_get_the_one_shot_results_and_a_failure_does_not_end_the_worker(inputs: Path, tmp_path: Path) -> None:
    requests = [
        _args("patched", "new.bin", "old.bin", "--method", "bsdiff", "--patch_threshold", "0.5"),
        _args("missing", "no-such-file", "old.bin"),
        _args("bad_flag", "new.bin", "old.bin", "--method", "xdelta"),
        _args("unchanged", "same.bin", "old.bin"),
        _args("whole", "new.bin"),  # no --source: nothing of the first request may be left over
        _args("too_big", "new.bin", "old.bin", "--max_diff_size", "100"),
        _args("patched_again", "new.bin", "old.bin"),  # defaults again: auto method, 0.95
        _args("unrelated", "other.bin", "old.bin"),
    ]
    w = Worker(inputs)
    try:
        responses = [w.send(args, request_id=0) for args in requests]
    finally:
        code, log = w.close()
    assert (code, log) == (0, "")

    oneshot = tmp_path / "oneshot"
    oneshot.mkdir()
    for name in ("old.bin", "new.bin", "same.bin", "other.bin"):
        (oneshot / name).write_bytes((inputs / name).read_bytes())
    for args, response in zip(requests, responses, strict=True):
        name = args[args.index("--out_info") + 1][: -len(".json")]
        proc = run_tool("ota.actions.file_patch", *args, cwd=oneshot)
        assert response.exit_code == proc.returncode, name
        if proc.returncode == 2:  # absl's parser names the script and adds "Try --help."
            assert response.output == "file_patch: usage: " + proc.stderr.split(": usage: ", 1)[1].split("\n")[0] + "\n"
        else:
            assert response.output == proc.stderr, name
        assert response.request_id == 0 and not response.was_cancelled
        if proc.returncode == 0:
            for out in (f"{name}.p", f"{name}.json"):
                assert (inputs / out).read_bytes() == (oneshot / out).read_bytes(), out

    assert [r.exit_code for r in responses] == [0, 1, 2, 0, 0, 0, 0, 0]
    assert responses[1].output == "file_patch: error: no-such-file: cannot read: No such file or directory\n"
    assert responses[2].output.startswith("file_patch: usage: ") and "xdelta" in responses[2].output
    assert responses[5].output == (
        "WARNING: system/too_big: BSDIFF failed (skipped: input larger than "
        "--max_diff_size=100 bytes); shipping the whole file\n"
    )
    methods = [(inputs / f"{name}.json").read_text() for name in ("patched", "unchanged", "whole", "patched_again")]
    assert [
        '"method":"BSDIFF"' in methods[0],
        '"UNCHANGED"' in methods[1],
        '"WHOLE"' in methods[2],
        '"BSDIFF"' in methods[3],
    ] == [True] * 4
    assert (inputs / "whole.p").read_bytes() == (inputs / "new.bin").read_bytes()


def test_param_file_one_shot_equals_the_plain_command_line(inputs: Path, tmp_path: Path) -> None:
    """What Bazel runs without workers: `file_patch @PARAMS` ("multiline": one argument a line)."""
    args = _args("via_params", "new.bin", "old.bin")
    (inputs / "p.params").write_text("".join(f"{a}\n" for a in args))
    via_params = run_tool("ota.actions.file_patch", "@p.params", cwd=inputs)
    assert (via_params.returncode, via_params.stderr) == (0, "")
    plain = tmp_path / "plain"
    plain.mkdir()
    for name in ("old.bin", "new.bin"):
        (plain / name).write_bytes((inputs / name).read_bytes())
    assert run_tool("ota.actions.file_patch", *args, cwd=plain).returncode == 0
    for out in ("via_params.p", "via_params.json"):
        assert (inputs / out).read_bytes() == (plain / out).read_bytes()

    failed = run_tool("ota.actions.file_patch", "@missing.params", cwd=inputs)
    assert (failed.returncode, failed.stderr) == (
        1,
        "file_patch: error: missing.params: cannot read the param file: No such file or directory\n",
    )


def test_a_path_with_odd_characters_survives_the_param_file(inputs: Path) -> None:
    """Only "\\n" ends an argument: form feeds and carriage returns stay in the path."""
    path = "etc/we\fird\r name"
    args = ["--target", "new.bin", "--path", path, "--out_data", "d", "--out_info", "i"]
    (inputs / "p.params").write_bytes("".join(f"{a}\n" for a in args).encode())
    assert run_tool("ota.actions.file_patch", "@p.params", cwd=inputs).returncode == 0
    assert '"path":"etc/we\\fird\\r name"' in (inputs / "i").read_text()


def test_a_broken_stream_ends_the_worker_with_one_line(inputs: Path) -> None:
    w = Worker(inputs)
    w.proc.stdin.write(b"\x10only-part")  # says 16 bytes, sends 9
    code, log = w.close()
    assert (code, log) == (1, "file_patch: error: worker stdin: input ends 7 bytes into a 16-byte message\n")


def test_message_framing() -> None:
    out = io.BytesIO()
    for size in (0, 1, 127, 128, 300, 70_000):
        persistent_worker.write_message(out, b"x" * size)
    assert out.getvalue()[:4] == b"\x00\x01x\x7f"
    assert out.getvalue().find(b"\xac\x02") > 0  # 300 = 0b10_0101100
    stream = io.BytesIO(out.getvalue())
    assert [len(persistent_worker.read_message(stream)) for _ in range(6)] == [0, 1, 127, 128, 300, 70_000]
    assert persistent_worker.read_message(stream) is None
    with pytest.raises(OtaError, match="over the 1048576-byte limit"):
        persistent_worker.read_message(io.BytesIO(b"\xff\xff\xff\xff\x0f"))
    with pytest.raises(OtaError, match="inside a message length"):
        persistent_worker.read_message(io.BytesIO(b"\x80"))
