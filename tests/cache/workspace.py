"""Checkout copies at other paths, and a Bazel client bound to one copy and its own output root.

The cache checks need the same sources at several paths, each with a fresh output base, to prove that
nothing path- or machine-specific gets into action keys or package bytes. Copying the files git
knows about (tracked, plus untracked files not ignored) rather than `git clone` lets a developer run
the checks on uncommitted work, and leaves out `bazel-*` symlinks and `user.bazelrc`.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
import subprocess
import time


def copy_checkout(source: pathlib.Path, destination: pathlib.Path) -> None:
    """Copies the files git lists in `source` (tracked + untracked-not-ignored) to `destination`."""
    listing = subprocess.run(
        ["git", "-C", str(source), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True,
        capture_output=True,
    ).stdout
    destination.mkdir(parents=True)
    for name in sorted(set(listing.decode().split("\0")) - {""}):
        src = source / name
        if not os.path.lexists(src):  # deleted in the work tree but still in the index
            continue
        dst = destination / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            dst.symlink_to(os.readlink(src))
        else:
            shutil.copy2(src, dst)


@dataclasses.dataclass(frozen=True)
class Result:
    """One finished Bazel command: exit code, wall time, and where its logs are."""

    exit_code: int
    seconds: float
    exec_log: pathlib.Path | None  # None: the command ran without an execution log
    bep: pathlib.Path
    console: pathlib.Path


@dataclasses.dataclass
class Bazel:
    """`bazel` run in `workspace` with its own output root, so every instance starts cold.

    `--nohome_rc` keeps a developer's ~/.bazelrc out; the checked-in .bazelrc and Debian's
    /etc/bazel/bazelrc still apply, as they do in CI. `env` replaces the environment entirely.
    """

    workspace: pathlib.Path
    output_user_root: pathlib.Path
    logs: pathlib.Path
    env: dict[str, str]
    bazel: str = "bazel"
    max_idle_secs: int = 900

    def _startup(self) -> list[str]:
        return [
            self.bazel,
            "--nohome_rc",
            f"--output_user_root={self.output_user_root}",
            f"--max_idle_secs={self.max_idle_secs}",
        ]

    def run(self, command: str, name: str, targets: list[str], flags: list[str], *, exec_log: bool = True) -> Result:
        """Runs `bazel <command> <flags> <targets>`; logs go to `<logs>/<name>.*`.

        `exec_log=False` leaves out the execution log, for a command whose time is measured:
        Bazel records every spawn with all its inputs and writes the JSON after the build
        (16 MB for the 7,000-file package of bench/build_scale_bench.py), which a user's build
        does not pay."""
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{name}.exec.json" if exec_log else None
        bep = self.logs / f"{name}.bep.json"
        console = self.logs / f"{name}.console.txt"
        argv = self._startup() + [
            command,
            *([f"--execution_log_json_file={log}"] if log else []),
            f"--build_event_json_file={bep}",
            "--experimental_build_event_upload_strategy=local",
            "--color=no",
            "--curses=no",
            *flags,
            "--",
            *targets,
        ]
        start = time.monotonic()
        with console.open("w") as out:
            out.write("$ " + " ".join(argv) + "\n")
            out.flush()
            code = subprocess.run(
                argv,
                cwd=self.workspace,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                check=False,
            ).returncode
        return Result(code, time.monotonic() - start, log, bep, console)

    def shutdown(self) -> None:
        """Stops this output root's Bazel server (each one holds ~300 MB until it idles out)."""
        if self.output_user_root.exists():
            subprocess.run(
                self._startup() + ["shutdown"],
                cwd=self.workspace,
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                stdin=subprocess.DEVNULL,
                check=False,
            )


def tail(path: pathlib.Path, lines: int = 25) -> str:
    """The last lines of a console log, for a failure message."""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
