"""Shared fixtures for the build-tool tests: trees on disk, tool runs in fresh processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


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
