"""The update journal: which steps of which package finished, with what result, durable across power loss.

Format (text, in the cache directory, file `ota_journal`):

    rules_ota journal 2 <package-id>
    done <step-id> <result-digest>
    done <step-id> <result-digest>
    ...

<package-id> is the SHA-256 of the signed manifest; <step-id> is `<phase>:<key>` with the key (a
path, entry or partition name) `escape`d (py/ota/format/paths.py), so a line stays one line of
printable ASCII whatever bytes a path holds; <result-digest> is what the step produced
(`ota.device.updater.resume.result_digests`). The journal is only a claim: anyone who can write the cache
can write one, so a resumed run skips a step only if the device shows its result
(`ota.device.updater.resume`), and the final check never comes from the journal.

The header is written to a temporary name, fsync'ed and renamed in, so the journal either does
not exist or names its package. Each `done` line is appended with one write and fsync'ed before
the next step starts. A line cut by power loss has no trailing newline, or is shorter than its
step id; only lines ending in a newline count, so a torn append reads as "not finished" and the
step (idempotent by construction) simply runs again. Lines that are not `done <step> <digest>`
are ignored.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field

from ota.device.fsops import FsOps
from ota.errors import OtaError

JOURNAL_NAME = "ota_journal"
_MAGIC = "rules_ota journal 2"
_TEMP_SUFFIX = ".new"
# A journal lists a few lines per file of the package; bound what a corrupt one can make us read.
MAX_JOURNAL_BYTES = 64 << 20


@dataclass
class Journal:
    """An open journal: its package, what its lines claim, and the steps this run counts as finished.

    `claimed` maps each step id to the result digest its line records (as read: untrusted).
    `done` holds the steps this run skips: empty after `load` until the caller has checked the
    claims against the device (`ota.device.updater.resume`), then every step marked by this run.
    Use `Journal.load` / `Journal.begin`.
    """

    path: str
    package_id: str
    ops: FsOps
    claimed: dict[str, str] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)
    _size: int = 0

    @staticmethod
    def location(cache_dir: str) -> str:
        return os.path.join(cache_dir, JOURNAL_NAME)

    @staticmethod
    def temp_location(cache_dir: str) -> str:
        """Where `begin` writes the header before renaming it in."""
        return os.path.join(cache_dir, JOURNAL_NAME + _TEMP_SUFFIX)

    @classmethod
    def load(cls, cache_dir: str, ops: FsOps) -> Journal | None:
        """The journal in `cache_dir`, or None if there is none (no update in progress)."""
        path = cls.location(cache_dir)
        try:
            # Non-blocking: a FIFO planted at the name would otherwise wait forever for a writer.
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as err:
            raise OtaError(path, f"journal: cannot open: {err.strerror}") from None
        try:
            mode = os.fstat(fd).st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):  # a directory: the read says EISDIR
                raise OtaError(path, "journal: not a regular file (a FIFO, socket or device)")
            raw = _read_bounded(fd, MAX_JOURNAL_BYTES + 1)
        except OSError as err:
            raise OtaError(path, f"journal: cannot read: {err.strerror}") from None
        finally:
            os.close(fd)
        if len(raw) > MAX_JOURNAL_BYTES:
            raise OtaError(path, f"journal: larger than {MAX_JOURNAL_BYTES} bytes")
        header, newline, body = raw.partition(b"\n")
        words = header.decode("utf-8", "replace").rsplit(" ", 1)
        if not newline or len(words) != 2 or words[0] != _MAGIC or not words[1]:
            raise OtaError(path, f"journal: bad header (expected '{_MAGIC} <package-id>')")
        claimed = {}
        complete = body[: body.rfind(b"\n") + 1]  # drop a torn last line
        for line in complete.decode("utf-8", "replace").splitlines():
            verb, _, rest = line.partition(" ")
            step, _, result = rest.rpartition(" ")
            if verb == "done" and step and result:
                claimed[step] = result
        return cls(path, words[1], ops, claimed, set(), len(header) + 1 + len(complete))

    @classmethod
    def begin(cls, cache_dir: str, package_id: str, ops: FsOps) -> Journal:
        """Creates the journal of a new update (atomically: temp name, fsync, rename, fsync dir)."""
        path, temp = cls.location(cache_dir), cls.temp_location(cache_dir)
        header = f"{_MAGIC} {package_id}\n".encode()
        fd = ops.create(temp, 0o600)
        try:
            ops.pwrite(fd, header, 0, temp)
            ops.fsync(fd, temp)
        finally:
            os.close(fd)
        ops.rename(temp, path)
        ops.fsync_dir(cache_dir)
        return cls(path, package_id, ops, {}, set(), len(header))

    def mark(self, step: str, result: str) -> None:
        """Records `step` as finished with `result`, durably, before anything after it happens."""
        line = f"done {step} {result}\n".encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            # A torn earlier line may sit at the end; appending after the last complete line
            # overwrites it, so the file stays a sequence of whole lines.
            self.ops.pwrite(fd, line, self._size, self.path)
            self.ops.fsync(fd, self.path)
        finally:
            os.close(fd)
        self._size += len(line)
        self.claimed[step] = result
        self.done.add(step)

    @staticmethod
    def room_for(step_ids: Iterable[str]) -> int:
        """Cache bytes a new journal with a `done` line for each of `step_ids` can take (an upper bound)."""
        header = len(f"{_MAGIC} {'0' * 64}\n".encode())
        return header + sum(len(f"done {step} {'0' * 64}\n".encode()) for step in step_ids)

    def clear(self) -> None:
        """Removes the journal (and a temporary a cut `begin` of an earlier run left): the update is complete."""
        temp = self.temp_location(os.path.dirname(self.path))
        if os.path.lexists(temp):
            self.ops.unlink(temp)
        self.ops.unlink(self.path)
        self.ops.fsync_dir(os.path.dirname(self.path))


def _read_bounded(fd: int, limit: int) -> bytes:
    """Up to `limit` bytes, read in pieces (os.read(fd, n) allocates n bytes before reading)."""
    pieces, size = [], 0
    while size < limit and (piece := os.read(fd, min(1 << 20, limit - size))):
        pieces.append(piece)
        size += len(piece)
    return b"".join(pieces)
