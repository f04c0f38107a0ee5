"""What a manifest must satisfy before ota_apply plans anything: rules that need no device.

The package reader has already refused unsafe or repeated paths, unknown ops and missing entries.
These rules catch the rest of what would otherwise be found only at the step that trips over it,
after earlier steps changed the device:
  * names and paths fit the kernel's limits (NAME_MAX, PATH_MAX) (a written file's or link's
    scratch name is a fixed-length hash in the root's scratch directory: sysroot.py);
  * every parent of a path the target has is a directory the package creates (MKDIR) or an
    unchanged entry of a directory whose `unchanged` group the device checks (and which it then
    finds to be the source build's directory), so no write can go below a link or file of the
    plan, whatever order the steps run in; the same holds for every unchanged group's directory;
  * a whole file's data is exactly the target's size when stored; a patch's is stored; a whole
    image's payload entry is exactly the target contents;
  * mode, uid and gid are values chmod/chown apply as given;
  * a FULL package only writes; in an incremental one, `source_kind` agrees with the operation
    and with `source`.
Every refusal is one line naming the package, the path and the field.
"""

from __future__ import annotations

from collections.abc import Callable

from ota.errors import OtaError
from ota.format.layout import MANIFEST_ENTRY
from ota.format.paths import escape, from_bytes, to_bytes
from ota.proto import ota_manifest_pb2 as pb

Op = pb.FileOperation
NAME_MAX = 255
PATH_MAX = 4096  # including the terminating NUL
_FULL_OPS = (Op.WRITE, Op.MKDIR, Op.SYMLINK)
_UNCHANGED_ID = 0xFFFFFFFF  # (uid_t)-1: chown leaves the owner as it is
_MODE_BITS = 0o7777
# Makes the one-line error of a rule (the caller knows the package, the path and the field).
Refuse = Callable[[str], OtaError]


def shown(path: str) -> str:
    """`path` for a one-line error: `escape`d (so no byte of it can break the line), quoted, shortened."""
    text = escape(path)
    if len(text) <= 160:
        return f"'{text}'"
    return f"'{text[:60]}'...'{text[-40:]}' ({len(to_bytes(path))} bytes)"


def _refuser(where: str, subject: str) -> Callable[[str], OtaError]:
    """The error for one manifest item: every refusal names the package and the item."""
    return lambda problem: OtaError(where, f"{subject}: {problem}")


def check_manifest(manifest: pb.OtaManifest, where: str, payload: dict[str, pb.PayloadEntry]) -> None:
    """Raises OtaError (naming `where`, the package) at the first rule the manifest breaks."""
    files = {from_bytes(op.path): op for op in manifest.files}
    incremental = manifest.type == pb.OtaManifest.INCREMENTAL
    grouped = {from_bytes(group.directory) for group in manifest.unchanged}
    for directory in sorted(grouped):
        if directory:
            refuse = _refuser(where, f"{MANIFEST_ENTRY} unchanged: {shown(directory)}")
            _check_lengths(directory, refuse)
            _check_directory_chain(directory, files, grouped, refuse)
    for path, op in files.items():
        refuse = _refuser(where, f"{MANIFEST_ENTRY} files: {shown(path)}")
        if not incremental and op.op not in _FULL_OPS:
            raise refuse(f"op {Op.Op.Name(op.op)}: a FULL package only writes (WRITE, MKDIR, SYMLINK)")

        _check_lengths(path, refuse)
        if op.op != Op.DELETE:
            parent = path.rpartition("/")[0]
            if parent:
                _check_directory_chain(parent, files, grouped, refuse)
            _check_metadata(op, refuse)
        if op.op == Op.SYMLINK:
            _check_link_target(from_bytes(op.symlink_target), refuse)
        if op.op == Op.WRITE and op.data.compression == pb.DataSlice.STORED and op.data.length != op.target.size:
            raise refuse(f"data: {op.data.length} stored bytes, but the target is {op.target.size} bytes")
        if op.op == Op.PATCH and op.data.compression != pb.DataSlice.STORED:
            raise refuse("data: a patch is stored, never deflated")
        if incremental:
            _check_source_kind(op, refuse)
        for side, content in (("source", op.source), ("target", op.target)):
            if op.HasField(side) and len(content.sha256) != 32:
                raise refuse(f"{side}.sha256: {len(content.sha256)} bytes, not 32")
    for index, part in enumerate(manifest.partitions):
        refuse_part = _refuser(where, f"{MANIFEST_ENTRY} partitions[{index}] ({part.name})")
        if not incremental and (part.method != pb.WHOLE or part.HasField("source")):
            raise refuse_part("a FULL package writes every partition WHOLE, from no source")
        if part.entry and part.method != pb.WHOLE and not part.HasField("source"):
            raise refuse_part("a patch needs a source")
        if part.entry and part.method == pb.WHOLE:
            _check_whole(payload[part.entry], part.target, f"entry {part.entry!r}", refuse_part)


def _check_lengths(path: str, refuse: Refuse) -> None:
    size = len(to_bytes(path))
    if size >= PATH_MAX:
        raise refuse(f"path is {size} bytes, longer than PATH_MAX allows ({PATH_MAX - 1})")
    for part in path.split("/"):
        if len(to_bytes(part)) > NAME_MAX:
            raise refuse(f"component {shown(part)} is {len(to_bytes(part))} bytes, longer than NAME_MAX ({NAME_MAX})")


def _check_directory_chain(
    directory: str, files: dict[str, pb.FileOperation], grouped: set[str], refuse: Refuse
) -> None:
    """`directory` and each directory above it is one the package creates (MKDIR), or one that no
    operation names and whose parent's unchanged group covers it (so the device checks it is the
    source build's entry, a directory, before any write)."""
    parts = directory.split("/")
    for ancestor in ("/".join(parts[:i]) for i in range(1, len(parts) + 1)):
        above = files.get(ancestor)
        if above is None and ancestor.rpartition("/")[0] in grouped:
            continue
        if above is None or above.op != Op.MKDIR:
            what = "not in the package" if above is None else f"a {Op.Op.Name(above.op)} operation"
            raise refuse(
                f"parent {shown(ancestor)} is {what}, not a directory the target has "
                "(MKDIR, or an unchanged entry its directory's group covers)"
            )


def _check_metadata(op: pb.FileOperation, refuse: Refuse) -> None:
    if op.mode & ~_MODE_BITS:
        raise refuse(f"mode {op.mode:o} has bits beyond the permission bits {_MODE_BITS:o}")
    for name, value in (("uid", op.uid), ("gid", op.gid)):
        if value == _UNCHANGED_ID:
            raise refuse(f"{name} {value} is (uid_t)-1, which chown reads as 'leave unchanged'")


def _check_link_target(link: str, refuse: Refuse) -> None:
    if not link:
        raise refuse("symlink_target is empty")
    if "\0" in link or len(to_bytes(link)) >= PATH_MAX:
        raise refuse(f"symlink_target {shown(link)} has a NUL byte or is longer than PATH_MAX allows")


def _check_whole(entry: pb.PayloadEntry, target: pb.ContentInfo, what: str, refuse: Refuse) -> None:
    if (entry.size, entry.sha256) != (target.size, target.sha256):
        raise refuse(
            f"{what} ({entry.size} bytes, sha256 {entry.sha256}) is not the target "
            f"({target.size} bytes, sha256 {target.sha256})"
        )


def _check_source_kind(op: pb.FileOperation, refuse: Refuse) -> None:
    kind = op.source_kind
    if kind not in Op.SourceKind.values():
        raise refuse(f"source_kind {kind} is unknown")
    if op.HasField("source") != (kind == Op.SOURCE_FILE):
        raise refuse(
            f"source_kind {Op.SourceKind.Name(kind)} does not agree with source "
            f"({'set' if op.HasField('source') else 'unset'}: set exactly for a regular file)"
        )
    if op.op in (Op.KEEP, Op.PATCH) and kind != Op.SOURCE_FILE:
        raise refuse(f"source_kind {Op.SourceKind.Name(kind)}: a {Op.Op.Name(op.op)} needs the source's regular file")
    if op.op == Op.DELETE and kind == Op.SOURCE_ABSENT:
        raise refuse("source_kind SOURCE_ABSENT: a DELETE removes something the source build has")
