"""The persistent worker protocol: Bazel's round trip against a real file_patch worker process.

Requests go in as Bazel 4.2.3 sends them (varint length + WorkRequest on stdin); each response
must carry the exit code and stderr the one-shot tool gives for the same command line, and the
outputs must be the one-shot tool's bytes. A failing request must not end the worker, and no flag
of one request may reach the next.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest

from build_helpers import Worker, run_tool
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
    w = Worker("ota.actions.file_patch", inputs)
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
    w = Worker("ota.actions.file_patch", inputs)
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
    with pytest.raises(OtaError) as refused:
        persistent_worker.read_message(io.BytesIO(b"\xff\xff\xff\xff\x0f"))
    assert str(refused.value) == (
        "worker stdin: message length 4294967295 is over the 134217728-byte (128 MiB) limit on a "
        "WorkRequest (the stream is corrupt)"
    )
    with pytest.raises(OtaError, match="inside a message length"):
        persistent_worker.read_message(io.BytesIO(b"\x80"))


def _varint(value: int) -> bytes:
    """A message length prefix alone (write_message cannot make one without its body)."""
    prefix = bytearray()
    while value > 0x7F:
        prefix.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(prefix) + bytes([value])


@pytest.mark.parametrize("over", [1, 1 << 20, (1 << 63) - 1 - persistent_worker.MAX_MESSAGE_SIZE])
def test_a_length_over_the_limit_ends_the_worker_before_its_body_is_read(inputs: Path, over: int) -> None:
    """The prefix alone is sent and stdin stays open: a worker that waited for the body would hang."""
    size = persistent_worker.MAX_MESSAGE_SIZE + over
    w = Worker("ota.actions.file_patch", inputs)
    w.proc.stdin.write(_varint(size))
    w.proc.stdin.flush()
    code = w.proc.wait(timeout=60)
    assert code == 1
    assert w.proc.stderr.read().decode() == (
        f"file_patch: error: worker stdin: message length {size} is over the 134217728-byte (128 MiB) "
        "limit on a WorkRequest (the stream is corrupt)\n"
    )
    w.proc.stdin.close()
    assert w.proc.stdout.read() == b""


def _bazel_inputs(count: int, seed: int) -> list[pb.Input]:
    """Inputs as Bazel lists them for a large OtaPackage action: exec paths of patches, infos and
    whole files of an imported tree, each with a 64-character hex digest."""
    rng = random.Random(seed)
    root = "bazel-out/k8-fastbuild/bin/scale/incremental_ota.patches/system"
    return [
        pb.Input(
            path=f"{root}/usr/lib/x86_64-linux-gnu/lib{rng.getrandbits(40):x}-{n}.so.{rng.randrange(10)}.{n % 2}",
            digest=rng.randbytes(32).hex().encode(),
        )
        for n in range(count)
    ]


@pytest.mark.parametrize(("count", "seed"), [(50_000, 3), (200_000, 4)])
def test_a_request_listing_a_large_trees_inputs_is_served(inputs: Path, count: int, seed: int) -> None:
    """Tens of MB of inputs (200,000 entries: a 200,000-file tree with every file whole) are
    served, several requests in a row, and the worker is still in step afterwards."""
    listed = _bazel_inputs(count, seed)
    w = Worker("ota.actions.file_patch", inputs)
    try:
        big = [w.send(_args(f"big{n}", "new.bin", "old.bin"), inputs=listed) for n in range(2)]
        small = w.send(_args("small", "new.bin", "old.bin"))
    finally:
        code, log = w.close()
    assert (code, log) == (0, "")
    size = pb.WorkRequest(arguments=_args("big0", "new.bin", "old.bin"), inputs=listed).ByteSize()
    assert 1 << 20 < size < persistent_worker.MAX_MESSAGE_SIZE
    assert [(r.exit_code, r.output) for r in [*big, small]] == [(0, "")] * 3
    patches = {(inputs / f"{name}.p").read_bytes() for name in ("big0", "big1", "small")}
    assert len(patches) == 1
