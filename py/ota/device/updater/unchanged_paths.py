"""The paths an incremental package leaves alone, proved intact on the device before any write.

Why: a path the same in both builds has no operation (docs/package-format.md, "Unchanged
paths"); the manifest carries, per directory, the count and digest of those entries instead
(py/ota/format/unchanged.py). The device lists each such directory through the root's no-follow
descriptors (sysroot.py), leaves out every name an operation covers (and the root's scratch
directory, which `SysRoot.listdir` never lists), and hashes what is left the way the writer did;
the root's own `lost+found` directory is matched either way (`device_digests`).
A stray file, a missing one, a changed mode or a directory swapped for a symlink changes the
digest, so the update is refused naming the directory. Nothing here writes, and the update never
touches an unchanged entry, so the same digests hold on a rerun after a power cut.
"""

from __future__ import annotations

import errno

from ota.device.updater.plan import Op, Plan
from ota.device.updater.sysroot import LOST_FOUND, SysRoot
from ota.errors import OtaError
from ota.format import unchanged
from ota.format.paths import from_bytes, to_bytes


def _where(root: SysRoot, directory: str) -> str:
    return root.where(directory) if directory else root.root


def device_digests(root: SysRoot, directory: str, named: dict[str, object]) -> list[tuple[int, bytes]]:
    """(count, digest) of the entries of `directory` on the device that no operation names.

    At the root, a real `lost+found` directory no operation names (`SysRoot.has_own_lost_found`)
    gives two candidates, without it first and then with it: the group cannot say whether the
    source build listed it, and each candidate is a state consistent with the source build, so
    either matching proves the group. Only the directory's own record is hashed, never what it holds.
    """
    records = []
    for name in root.listdir(directory):
        path = f"{directory}/{name}" if directory else name
        if path in named:
            continue
        entry = root.lstat(path)
        if entry is None:
            continue  # gone since the listing: the count then differs
        size, data = 0, b""
        if entry.kind == "file":
            size, data = entry.size, bytes.fromhex(root.content(path).sha256)
        elif entry.kind == "symlink":
            data = root.readlink(path)
        records.append(unchanged.Record(to_bytes(name), entry.kind, entry.mode, entry.uid, entry.gid, size, data))
    with_all = unchanged.digest(records)
    if directory or not root.has_own_lost_found(named):
        return [with_all]
    lost_found = to_bytes(LOST_FOUND)
    return [unchanged.digest(record for record in records if record.name != lost_found), with_all]


def check(plan: Plan, root: SysRoot, when: str = "") -> None:
    """Every unchanged group holds the source build's entries, and every directory above an
    operation that no operation names is a directory on the device. `when` ends each message
    (" after the update" for the final check)."""
    for group in plan.manifest.unchanged:
        directory = from_bytes(group.directory)
        where = _where(root, directory)
        try:
            candidates = device_digests(root, directory, plan.files)
        except FileNotFoundError:
            raise OtaError(where, f"directory is missing{when} (the package keeps its entries unchanged)") from None
        except OSError as err:
            if err.errno in (errno.ELOOP, errno.ENOTDIR):
                raise OtaError(
                    where, f"is a symlink or not a directory{when}; the source build has a directory here"
                ) from None
            raise
        if (group.count, group.sha256) in candidates:
            continue
        # Report against the candidate with the group's count if there is one, else the file
        # system's view (without its own lost+found).
        count, digest = next((c for c in candidates if c[0] == group.count), candidates[0])
        if count != group.count:
            raise OtaError(
                where,
                f"holds {count} entries the update leaves unchanged{when}; the source build has "
                f"{group.count} (an entry added or missing)",
            )
        if digest != group.sha256:
            raise OtaError(
                where,
                f"{count} unchanged entr{'y' if count == 1 else 'ies'}: at least one differs from the source "
                f"build{when} (contents, kind, link, mode or owner)",
            )
    for directory in _unnamed_parents(plan):
        entry = root.lstat(directory)
        if entry is None or entry.kind != "dir":
            raise OtaError(
                _where(root, directory),
                f"is {'missing' if entry is None else entry.shown}{when}; the package expects the "
                "source build's directory here (it writes below it)",
            )


def _unnamed_parents(plan: Plan) -> list[str]:
    """Directories above a target path that no operation names: unchanged ones, sorted."""
    found: set[str] = set()
    for path, op in plan.files.items():
        if op.op == Op.DELETE:
            continue
        parent = path.rpartition("/")[0]
        while parent and parent not in plan.files and parent not in found:
            found.add(parent)
            parent = parent.rpartition("/")[0]
    return sorted(found, key=to_bytes)
