"""Runs Bazel inside a test, on a private copy of this checkout (the one harness for such tests).

Why nested: incremental-rebuild counts, reproducibility across checkouts and importing a release
archive are properties of whole Bazel invocations, observable only from outside them. Each
NestedWorkspace is a copy of the checkout the test runs from, with its own --output_user_root
(so its own server, output base and action cache), and it shuts its server down when closed.

The copy holds the files git knows (tracked and untracked-but-not-ignored), so bazel-* symlinks,
caches and user.bazelrc stay out. The pip repository of the outer build is reused through
--override_repository (same contents, no network, no 30 s pip fetch per copy).

Tests using this need the tags "exclusive" (one nested server at a time on a 2-core machine) and
"no-sandbox" (the nested Bazel runs its own sandbox and writes its own output root).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
from dataclasses import dataclass, field

from tests.cache.workspace import copy_checkout

REPO = pathlib.Path(__file__).absolute().parents[2]  # the runfiles copy of this workspace
BAZEL = shutil.which("bazel") or "/usr/bin/bazel"


def source_checkout() -> pathlib.Path:
    """The checkout this test was built from (runfiles are symlinks into it)."""
    marker = (REPO / "rules/defs.bzl").resolve()
    root = marker.parents[1]
    if not (root / "WORKSPACE").is_file():
        raise RuntimeError(f"{marker}: cannot find the checkout (no WORKSPACE in {root})")
    return root


def outer_pypi() -> pathlib.Path | None:
    """The outer build's fetched @rules_ota_pypi repository directory, if the runfiles lead to it."""
    runfiles_pypi = REPO.parent / "rules_ota_pypi"
    for candidate in sorted(runfiles_pypi.rglob("*.py")) if runfiles_pypi.is_dir() else []:
        real = candidate.resolve()
        for parent in real.parents:
            if parent.name == "rules_ota_pypi" and parent.parent.name == "external":
                return parent if (parent / "WORKSPACE").exists() else None
        return None
    return None


def read_execution_log(path: pathlib.Path) -> list[dict]:
    """Parses --execution_log_json_file output: JSON objects one after another, not a list."""
    text = path.read_text()
    decoder = json.JSONDecoder()
    spawns, pos = [], 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            return spawns
        spawn, pos = decoder.raw_decode(text, pos)
        spawns.append(spawn)


def patched_path(spawn: dict, workspace: pathlib.Path) -> str | None:
    """The system path an OtaFilePatch spawn diffs, from the "path" of the info JSON it wrote
    (`<name>.patches/system/<artifact>.json`, read in `workspace`): artifacts are named by a
    digest of the path (rules/private/names.bzl), and the info says it whatever the command line
    looks like (flags, or a param file)."""
    for output in spawn.get("listedOutputs", []):
        if ".patches/system/" in output and output.endswith(".json"):
            return json.loads((workspace / output).read_bytes().decode("utf-8", "surrogateescape"))["path"]
    return None


@dataclass
class NestedWorkspace:
    """A checkout copy with its own Bazel output root."""

    root: pathlib.Path
    output_user_root: pathlib.Path
    extra_flags: list[str] = field(default_factory=list)

    @classmethod
    def create(cls, base: pathlib.Path, name: str) -> NestedWorkspace:
        """Copies the checkout to base/name/<checkout> with an output root base/name/out."""
        checkout = base / name / "checkout"
        copy_checkout(source_checkout(), checkout)
        ws = cls(checkout, base / name / "out")
        pypi = outer_pypi()
        if pypi is not None:
            ws.extra_flags.append(f"--override_repository=rules_ota_pypi={pypi}")
        return ws

    def bazel(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        """Runs one bazel command in the copy; raises with its output if it fails."""
        env = {
            "PATH": "/bin:/usr/bin:/usr/local/bin",
            "HOME": str(self.output_user_root.parent),
            "USER": os.environ.get("USER", "root"),
        }
        command = [BAZEL, f"--output_user_root={self.output_user_root}", "--max_idle_secs=300", *args]
        if args and args[0] in ("build", "test", "aquery"):
            command += ["--curses=no", "--noshow_progress", *self.extra_flags]
        proc = subprocess.run(
            command, cwd=self.root, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if proc.returncode != 0:
            raise AssertionError(f"{' '.join(command)} exited {proc.returncode}:\n{proc.stderr[-6000:]}")
        return proc

    def build(self, *targets: str, log: pathlib.Path | None = None) -> list[dict]:
        """Builds targets; with `log`, returns the spawns the build executed or fetched."""
        flags = [f"--execution_log_json_file={log}"] if log else []
        self.bazel("build", *flags, *targets)
        return read_execution_log(log) if log else []

    def bin(self, path: str) -> pathlib.Path:
        """A file under bazel-bin of this copy, e.g. bin("release/incremental_ota.zip")."""
        return self.root / "bazel-bin" / path

    def close(self) -> None:
        """Stops the nested server (it would otherwise idle for --max_idle_secs)."""
        subprocess.run(
            [BAZEL, f"--output_user_root={self.output_user_root}", "shutdown"],
            cwd=self.root,
            env={"PATH": "/bin:/usr/bin", "HOME": str(self.output_user_root.parent)},
            capture_output=True,
            timeout=120,
            check=False,
        )
