"""Shared fixtures for the build-tool tests: trees on disk, tool runs in fresh processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ota.actions import persistent_worker
from ota.proto import worker_protocol_pb2 as pb


@dataclass(frozen=True)
class Item:
    """One path of a test tree: file (data), dir, or symlink (target)."""

    path: str
    kind: str = "file"
    data: bytes = b""
    target: str = ""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0


def write_tree(root: Path, name: str, items: list[Item]) -> Path:
    """Writes each file under root/name/ and root/name.tree.json with paths relative to root."""
    entries = []
    for item in items:
        entry = {"path": item.path, "kind": item.kind, "mode": item.mode, "uid": item.uid, "gid": item.gid}
        if item.kind == "file":
            file = root / name / item.path
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_bytes(item.data)
            entry["file"] = f"{name}/{item.path}"
        elif item.kind == "symlink":
            entry["target"] = item.target
        entries.append(entry)
    tree = root / f"{name}.tree.json"
    tree.write_text(json.dumps({"entries": entries}))
    return tree


def tool_env(**extra: str) -> dict[str, str]:
    """The environment for a tool process: this interpreter's import path, made absolute, so the
    tool also runs from another working directory."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in sys.path if p)
    env.update(extra)
    return env


def run_tool(module: str, *args: str, cwd: Path, umask: int | None = None, **env: str) -> subprocess.CompletedProcess:
    """Runs `python -m <module> args...` in `cwd`; returns the completed process (text mode)."""
    preexec = None if umask is None else (lambda: os.umask(umask))
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=tool_env(**env),
        capture_output=True,
        text=True,
        preexec_fn=preexec,
        check=False,
    )


def run_ok(module: str, *args: str, cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    proc = run_tool(module, *args, cwd=cwd, **kwargs)
    assert proc.returncode == 0, proc.stderr
    return proc


class Worker:
    """A tool's persistent worker process speaking the protocol on pipes, as Bazel starts it."""

    def __init__(self, module: str, cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, "--persistent_worker"],
            cwd=cwd,
            env=tool_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def send(self, args: list[str], request_id: int = 0, inputs: list[pb.Input] | None = None) -> pb.WorkResponse:
        """One request (by default listing one input, as Bazel always lists some); its response."""
        listed = [pb.Input(path="x", digest=b"\1")] if inputs is None else inputs
        request = pb.WorkRequest(arguments=args, request_id=request_id, inputs=listed)
        persistent_worker.write_message(self.proc.stdin, request.SerializeToString())
        message = persistent_worker.read_message(self.proc.stdout)
        assert message is not None, self.proc.stderr.read().decode()
        return pb.WorkResponse.FromString(message)

    def close(self) -> tuple[int, str]:
        """Ends the input as Bazel does at shutdown; the exit code and everything logged on stderr."""
        self.proc.stdin.close()
        code = self.proc.wait(timeout=30)
        rest = self.proc.stdout.read()
        assert rest == b"", rest  # nothing but responses ever reaches stdout
        return code, self.proc.stderr.read().decode()
