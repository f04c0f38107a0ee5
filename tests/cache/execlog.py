"""Reads Bazel's `--execution_log_json_file` and counts, per mnemonic, how each spawn was satisfied.

Why the execution log and not Bazel's `INFO: N processes: ...` line: that line lumps every mnemonic
together, while the cache checks must show that *each* OtaFilePatch, OtaBootPatch and OtaPackage
spawn came from the remote cache. Bazel 4.2.3 writes the log as a stream of concatenated,
pretty-printed JSON objects (one per spawn), not as a JSON array or JSON lines.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Iterable, Iterator, Sequence

_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class Spawn:
    """One spawn of the log: what ran, and whether its result came from a (remote or disk) cache."""

    mnemonic: str
    runner: str
    remote_cache_hit: bool
    outputs: dict[str, str]  # exec path -> sha256 of the output, as Bazel recorded it
    args: tuple[str, ...] = ()  # the command line (exec paths), for re-running the same work
    progress: str = ""  # the progress message, which names the action in Bazel's profile too
    # Input paths outside runfiles trees (a tool's runfiles, the pip hub's thousands of files, are
    # the same for every action and never another spawn's output): for the action graph.
    inputs: tuple[str, ...] = ()
    # The outputs the action declares. `outputs` lists only those on the local disk, which under
    # --remote_download_toplevel leaves out every intermediate one.
    declared: tuple[str, ...] = ()


def flag_values(args: Sequence[str]) -> dict[str, str]:
    """`--name value` and `--name=value` pairs of a command line, as {name: value}."""
    values: dict[str, str] = {}
    for index, arg in enumerate(args):
        if not arg.startswith("--"):
            continue
        name, eq, value = arg[2:].partition("=")
        if eq:
            values[name] = value
        elif index + 1 < len(args) and not args[index + 1].startswith("--"):
            values[name] = args[index + 1]
    return values


@dataclasses.dataclass
class Tally:
    """Spawns of one mnemonic: how many there were, how many were cache hits, how many executed."""

    total: int = 0
    hits: int = 0

    @property
    def executed(self) -> int:
        return self.total - self.hits


def _spawn(entry: dict) -> Spawn:
    outputs = {o["path"]: o.get("digest", {}).get("hash", "") for o in entry.get("actualOutputs", [])}
    return Spawn(
        mnemonic=entry.get("mnemonic", ""),
        runner=entry.get("runner", ""),
        remote_cache_hit=bool(entry.get("remoteCacheHit", False)),
        outputs=outputs,
        args=tuple(entry.get("commandArgs", ())),
        progress=entry.get("progressMessage", ""),
        inputs=tuple(i["path"] for i in entry.get("inputs", ()) if ".runfiles/" not in i.get("path", "")),
        declared=tuple(entry.get("listedOutputs", ())),
    )


def read_spawns(path: pathlib.Path) -> Iterator[Spawn]:
    """Yields the spawns of an execution log, reading it in chunks (logs of big builds are large)."""
    decoder = json.JSONDecoder()
    buffer = ""
    with path.open(encoding="utf-8") as stream:
        eof = False
        while True:
            buffer = buffer.lstrip()
            if not buffer:
                if eof:
                    return
                chunk = stream.read(_CHUNK)
                eof = not chunk
                buffer += chunk
                continue
            try:
                entry, end = decoder.raw_decode(buffer)
            except json.JSONDecodeError:
                if eof:
                    raise ValueError(f"{path}: truncated or malformed execution log") from None
                chunk = stream.read(_CHUNK)
                eof = not chunk
                buffer += chunk
                continue
            buffer = buffer[end:]
            yield _spawn(entry)


def tally(spawns: Iterable[Spawn], mnemonics: Iterable[str]) -> dict[str, Tally]:
    """Counts the spawns of each requested mnemonic (absent mnemonics get an all-zero Tally)."""
    counts = {m: Tally() for m in mnemonics}
    for spawn in spawns:
        count = counts.get(spawn.mnemonic)
        if count is None:
            continue
        count.total += 1
        count.hits += spawn.remote_cache_hit
    return counts


def format_tally(counts: dict[str, Tally]) -> str:
    """`OtaFilePatch 12/12 hits (0 executed), ...`: one line for a CI log."""
    return ", ".join(f"{m} {t.hits}/{t.total} hits ({t.executed} executed)" for m, t in counts.items())
