"""The action tools (file_patch, file_patch_shard, package) as Bazel persistent workers, and as the
one-shot command Bazel falls back to.

A release with ~1,500 changed files runs ~1,500 OtaFilePatch actions; started one process each,
every action pays a Python start and the differs' imports, which costs more than many of the
diffs. With `supports-workers`, Bazel starts this tool once per mnemonic with
`--persistent_worker` and sends it one WorkRequest per action (proto/worker_protocol.proto: the
protobuf encoding behind a varint length, which is what Bazel 4.2.3 speaks by default).

Without `--persistent_worker` (worker strategy off, `--strategy=OtaFilePatch=sandboxed`, remote
execution) Bazel runs `file_patch @PARAMS` instead: the same request, read from the param file,
handled by the same `handle()`, so both ways write the same bytes.

Each request is parsed into a fresh copy of the tool's flags (never absl's global FLAGS), so
nothing one action set can reach the next; a failing request gets its exit code and message in
its own response and the worker goes on serving. The protocol does not depend on the tool: a
`Tool` names its flags and the function that runs one command line; each tool's module defines
its `TOOL` and runs `main(sys.argv, TOOL)` (py/ota/actions/file_patch.py,
py/ota/actions/file_patch_shard.py, py/ota/actions/package_writer.py).

OtaPackage is served too: a one-file rebuild runs one bucket and the package assembler, and a
process start with the assembler's imports was most of that action's time. Its requests are the
large ones (every input of the action is listed), hence MAX_MESSAGE_SIZE.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from absl import flags

from ota.errors import OtaError, UsageError
from ota.io import forked, runner

WORKER_FLAG = "--persistent_worker"
# A WorkRequest holds the command line (one @params argument) and every input of the action with
# its digest, about 100 to 150 bytes an input. The largest request is OtaPackage's: the tool's
# runfiles (about 470: bazel/pip.bzl `without_deps` keeps numpy out), the manifests, a patch and
# its info per changed file or a whole file per new one: 0.5 MB for the 7,000-file tree of bench/build_scale_bench.py, 2 MB for 20,000 files.
# A 200,000-file tree with every file changed would list about 400,000 inputs, 60 MB at 150 bytes
# each; 128 MiB leaves twice that, and a length beyond it means the stream is corrupt, which is
# refused before any of its body is read or allocated.
MAX_MESSAGE_SIZE = 128 << 20


@dataclass(frozen=True)
class Outcome:
    """What one run of the tool amounts to: its exit code and what it wrote to stderr."""

    exit_code: int
    output: str


@dataclass(frozen=True)
class Tool:
    """A command a worker can serve: its name (for messages), its help text, the absl flags it
    reads (the names of the modules defining them, plus single flags defined elsewhere), and
    the function that runs one command line on parsed flag values and the leftover arguments."""

    name: str
    doc: str
    flag_modules: tuple[str, ...]
    body: Callable[[flags.FlagValues, Sequence[str]], None]
    single_flags: tuple[str, ...] = ()

    def fresh_flags(self) -> flags.FlagValues:
        """A new FlagValues holding copies of the tool's flags at their defaults."""
        values = flags.FlagValues()
        chosen = [flag for module in self.flag_modules for flag in flags.FLAGS.get_flags_for_module(module)]
        for flag in chosen + [flags.FLAGS[name] for name in self.single_flags]:
            copied = copy.deepcopy(flag)
            copied.unparse()
            values[flag.name] = copied
        return values

    def run_once(self, argv: Sequence[str]) -> None:
        """The tool's main on a private flag namespace."""
        values = self.fresh_flags()
        if any(arg in ("-h", "--help", "--helpshort") for arg in argv[1:]):
            print(f"{self.doc}\nFlags:\n{values.get_help()}", file=sys.stderr)
            return
        try:
            rest = values(list(argv))
        except flags.Error as err:
            raise UsageError(str(err)) from None
        self.body(values, rest)


def handle(args: Sequence[str], tool: Tool) -> Outcome:
    """Runs one command line of `tool` (without the program name) and reports how it went.

    Whatever the request writes to stderr is captured into the outcome, not the worker's log, so
    Bazel shows it with the action that caused it. A bug in the tool (any other exception) is
    exit 1 with its traceback, as a one-shot process would end, and the next request still runs.
    """
    captured = io.StringIO()
    with contextlib.redirect_stderr(captured):
        try:
            code = runner.guarded(tool.name, tool.run_once)([tool.name, *args])
        except Exception:  # noqa: BLE001 - one request's bug must not end the worker
            traceback.print_exc(file=captured)
            code = runner.EXIT_FAILURE
    return Outcome(code, captured.getvalue())


def expand_flagfiles(args: Sequence[str]) -> list[str]:
    """Replaces each `@FILE` argument by FILE's lines (Bazel's "multiline" param file format:
    one argument per line, ended by "\n" only, so no other line break may split a path)."""
    expanded: list[str] = []
    for arg in args:
        if not arg.startswith("@"):
            expanded.append(arg)
            continue
        try:
            with open(arg[1:], encoding="utf-8", newline="") as param_file:
                text = param_file.read()
        except (OSError, UnicodeDecodeError) as err:
            raise OtaError(arg[1:], f"cannot read the param file: {getattr(err, 'strerror', None) or err}") from None
        expanded += param_file_arguments(text)
    return expanded


def param_file_arguments(text: str) -> list[str]:
    """The arguments of a param file in Bazel's "multiline" format: one a line, each ended by "\n"
    (a last line may lack it); no other line break ends one, since a path may hold any of them."""
    lines = text.split("\n")
    return lines[:-1] if lines[-1] == "" else lines


def _read_varint(stream: BinaryIO) -> int | None:
    """A base-128 varint from `stream`; None at a clean end of input (Bazel closed the pipe)."""
    value, shift = 0, 0
    while True:
        byte = stream.read(1)
        if not byte:
            if shift == 0:
                return None
            raise OtaError("worker stdin", "input ends inside a message length")
        value |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return value
        shift += 7
        if shift > 63:
            raise OtaError("worker stdin", "message length is not a varint")


def read_message(stream: BinaryIO) -> bytes | None:
    """One length-delimited message, or None when the input ended between messages."""
    size = _read_varint(stream)
    if size is None:
        return None
    if size > MAX_MESSAGE_SIZE:
        raise OtaError(
            "worker stdin",
            f"message length {size} is over the {MAX_MESSAGE_SIZE}-byte ({MAX_MESSAGE_SIZE >> 20} MiB) limit "
            "on a WorkRequest (the stream is corrupt)",
        )
    data = stream.read(size)
    if len(data) != size:
        raise OtaError("worker stdin", f"input ends {size - len(data)} bytes into a {size}-byte message")
    return data


def write_message(stream: BinaryIO, data: bytes) -> None:
    """Writes `data` behind its varint length and flushes: Bazel waits for each response."""
    size, prefix = len(data), bytearray()
    while size > 0x7F:
        prefix.append(0x80 | (size & 0x7F))
        size >>= 7
    prefix.append(size)
    stream.write(bytes(prefix) + data)
    stream.flush()


def serve(requests: BinaryIO, responses: BinaryIO, tool: Tool) -> int:
    """Answers WorkRequests until `requests` ends; returns the worker's exit code."""
    from google.protobuf.message import DecodeError

    from ota.proto import worker_protocol_pb2 as pb

    while True:
        try:
            message = read_message(requests)
            if message is None:
                return runner.EXIT_OK
            request = pb.WorkRequest.FromString(message)
        except (OtaError, DecodeError) as err:  # framing is lost: nothing more can be answered
            print(f"{tool.name}: error: {err}", file=sys.stderr)
            return runner.EXIT_FAILURE
        outcome = handle(request.arguments, tool)
        forked.release_free_memory()  # the request's file contents: resident size falls back after each
        response = pb.WorkResponse(exit_code=outcome.exit_code, output=outcome.output, request_id=request.request_id)
        write_message(responses, response.SerializeToString(deterministic=True))


def main(argv: Sequence[str], tool: Tool) -> int:
    """`--persistent_worker`: serve requests on stdin/stdout; otherwise one run (`@FILE` expanded)."""
    if WORKER_FLAG in argv[1:]:
        # Stdout carries the protocol; point fd 1 at stderr so a stray print cannot corrupt it.
        responses = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
        return serve(sys.stdin.buffer, responses, tool)
    try:
        args = expand_flagfiles(argv[1:])
    except OtaError as err:
        print(f"{tool.name}: error: {err}", file=sys.stderr)
        return runner.EXIT_FAILURE
    outcome = handle(args, tool)
    sys.stderr.write(outcome.output)
    return outcome.exit_code
