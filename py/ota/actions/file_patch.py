"""file_patch: one patch (or the reason there is none) for one changed file or partition.

One Bazel action per path (docs/contracts.md#3-patch-info), so a rebuild recomputes only the paths that changed and
a second machine gets every patch from the remote cache. A diff that fails or does not pay never
fails the build: the file ships whole, as AOSP's ota_from_target_files does (docs/formats.md#per-file-decision), with
one WARNING line when something went wrong. Only unreadable inputs are errors.

Kept light on purpose (a release runs hundreds of these processes): no protobuf, no zip writer,
and the differs are imported only to patch a file (ota.actions.make_bsdiff's memory model sets the size bound).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from absl import flags

from ota.actions import persistent_worker, toolchain_identity
from ota.actions.patch_info import BSDIFF, IMGDIFF, IMGDIFF_ZIP, UNCHANGED, WHOLE, FilePatch
from ota.errors import OtaError, UsageError
from ota.format import hashing, jsonio
from ota.format.paths import escape, unescape
from ota.io import fileio

METHOD_FLAGS = {"bsdiff": BSDIFF, "imgdiff": IMGDIFF, "imgdiff_zip": IMGDIFF_ZIP}
# ota_from_target_files' DIFF_PROGRAM_BY_EXT (docs/formats.md#per-file-decision).
METHOD_BY_EXTENSION = {".gz": IMGDIFF, ".img": IMGDIFF, ".zip": IMGDIFF_ZIP, ".jar": IMGDIFF_ZIP, ".apk": IMGDIFF_ZIP}
DEFAULT_THRESHOLD = 0.95
# Without --max_diff_size, a diff's peak memory, inputs included, stays within this budget (4.5 GiB:
# what bsdiff4's 18x the old file needed for the 256 MiB inputs once allowed,
# docs/formats.md#measured-limits-of-bsdiff4). The largest inputs that fit follow from the cost of
# the diff that runs (ota.actions.make_bsdiff.peak_estimate, docs/performance.md): 658 MiB for the compiled
# diff, 241 MiB where only bsdiff4 loads.
DIFF_MEMORY_BUDGET = 9 << 29


def threshold_in_range(value: float) -> bool:
    """The one range of the threshold, (0, 1], which ota_package's patch_threshold also enforces
    (rules/private/ota_package.bzl): 0 would ship every file whole, and a patch larger than its
    file is never worth shipping. NaN and infinities fall outside it."""
    return 0.0 < value <= 1.0


def default_max_diff_size() -> int:
    """The largest inputs (source and target alike) whose diff fits DIFF_MEMORY_BUDGET."""
    from ota.actions import make_bsdiff

    return DIFF_MEMORY_BUDGET // make_bsdiff.peak_estimate(1, 1)


flags.DEFINE_string("source", None, "Source version of the file; omitted: ship the target whole.")
flags.DEFINE_string("target", None, "Target version of the file.")
flags.DEFINE_string(
    "path",
    None,
    "Path (or partition name) the file is known by, `escape`d as py/ota/format/paths.py defines (one line of "
    "ASCII, so any file name fits a param file line); names it in the info and warnings.",
)
flags.DEFINE_enum("method", "auto", ["auto", *METHOD_FLAGS], "Differ; auto picks by the target path's extension.")
flags.DEFINE_float("patch_threshold", DEFAULT_THRESHOLD, "Ship the whole file when patch size > this x target size.")
flags.register_validator(
    "patch_threshold",
    threshold_in_range,
    message="must be a number in (0, 1], the range ota_package's patch_threshold accepts",
)
flags.DEFINE_integer(
    "max_diff_size",
    None,
    "Inputs larger than this many bytes ship whole without diffing (memory bound); default: the "
    "largest whose diff needs at most 4.5 GiB (658 MiB with the compiled diff, 241 MiB with bsdiff4).",
    lower_bound=0,
)
flags.DEFINE_string("out_data", None, "Where to write the patch, the whole target, or nothing.")
flags.DEFINE_string("out_info", None, "Where to write the info JSON.")


@dataclass(frozen=True)
class PatchResult:
    """What to ship for one path: `method` and its `data`, and a warning line ("" if none)."""

    method: str
    data: bytes
    warning: str = ""


def choose_method(path: str, method: str = "auto") -> str:
    """BSDIFF, IMGDIFF or IMGDIFF_ZIP for a --method flag value and the target's path."""
    if method != "auto":
        return METHOD_FLAGS[method]
    return METHOD_BY_EXTENSION.get(os.path.splitext(path)[1].lower(), BSDIFF)


def _diff(method: str, source: bytes, target: bytes, path: str) -> bytes:
    if method == BSDIFF:
        from ota.actions import make_bsdiff

        return make_bsdiff.diff(source, target)
    from ota.actions import imgdiff

    names = {"source_name": f"{escape(path)} (source)", "target_name": escape(path)}
    if method == IMGDIFF:
        return imgdiff.make_image_patch(source, target, **names)
    return imgdiff.make_zip_patch(source, target, **names)


def whole_warning(path: str, method: str, reason: str) -> str:
    """The one warning line of a diff that could not be used (docs/contracts.md#3-patch-info)."""
    return f"WARNING: {escape(path)}: {method} failed ({' '.join(reason.split())}); shipping the whole file"


def make_patch(
    source: bytes | None, target: bytes, path: str, method: str = "auto", threshold: float = DEFAULT_THRESHOLD
) -> PatchResult:
    """Diffs `source` into `target` and decides what ships.

    UNCHANGED for identical contents; the patch if it applies back to exactly `target` and is at
    most `threshold` x the target size; otherwise WHOLE. Every differ failure (any exception:
    the differs raise OtaError for e.g. imgdiff's chunk-structure mismatch, and a differ bug must
    not fail a release either) becomes WHOLE with a warning. Each patch is applied once here,
    because a patch that does not reproduce its target would brick a device, not fail a build.
    """
    if source is None:
        return PatchResult(WHOLE, target)
    if source == target:
        return PatchResult(UNCHANGED, b"")
    chosen = choose_method(path, method)
    try:
        patch = _diff(chosen, source, target, path)
    except Exception as err:  # noqa: BLE001 - any differ failure ships the file whole (docs/contracts.md#3-patch-info)
        return PatchResult(WHOLE, target, whole_warning(path, chosen, _describe(err)))
    if len(patch) > threshold * len(target):
        return PatchResult(WHOLE, target)
    from ota.format.patch import apply_patch

    try:
        applied = apply_patch(source, patch, where=path)
    except Exception as err:  # noqa: BLE001 - same rule: never ship an unverified patch
        return PatchResult(WHOLE, target, whole_warning(path, chosen, f"its patch does not apply: {_describe(err)}"))
    if applied != target:
        return PatchResult(WHOLE, target, whole_warning(path, chosen, "its patch does not reproduce the target"))
    return PatchResult(chosen, patch)


def _describe(err: Exception) -> str:
    return str(err) if isinstance(err, OtaError) else f"{type(err).__name__}: {err}"


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError as err:
        raise OtaError(path, f"cannot read: {err.strerror or err}") from None


def patch_files(
    source_path: str | None,
    target_path: str,
    path: str,
    out_data: str,
    *,
    method: str = "auto",
    threshold: float = DEFAULT_THRESHOLD,
    max_diff_size: int | None = None,
) -> FilePatch:
    """Runs `make_patch` on two files and writes `out_data`; inputs above `max_diff_size` bytes
    (default_max_diff_size when None) are only hashed and copied, never read whole, so a huge
    image cannot exhaust memory."""
    largest = max(_size(target_path), _size(source_path) if source_path else 0)
    if max_diff_size is None:
        max_diff_size = default_max_diff_size()
    large = largest > max_diff_size
    if not large:
        source = fileio.read_file(source_path) if source_path else None
        target = fileio.read_file(target_path)
        result = make_patch(source, target, path, method, threshold)
        fileio.write_file(out_data, result.data)
        data = hashing.of_bytes(result.data)
        return FilePatch(
            path,
            result.method,
            None if source is None else hashing.of_bytes(source),
            hashing.of_bytes(target),
            data.size,
            data.sha256,
            result.warning,
        )
    source_info = hashing.of_file(source_path) if source_path else None
    target_info = hashing.of_file(target_path)
    if source_info == target_info:
        fileio.write_file(out_data, b"")
        empty = hashing.of_bytes(b"")
        return FilePatch(path, UNCHANGED, source_info, target_info, empty.size, empty.sha256)
    warning = ""
    if source_info is not None:
        reason = f"skipped: input larger than --max_diff_size={max_diff_size} bytes"
        warning = whole_warning(path, choose_method(path, method), reason)
    try:
        shutil.copyfile(target_path, out_data)
    except OSError as err:
        raise OtaError(out_data, f"cannot write: {err.strerror or err}") from None
    return FilePatch(path, WHOLE, source_info, target_info, target_info.size, target_info.sha256, warning)


def patch_from_flags(values: flags.FlagValues, rest: Sequence[str]) -> None:
    """One patch from parsed flag `values` (the global FLAGS, or a persistent worker's private
    copy per request) and the leftover arguments `rest`: writes the data and the info JSON."""
    toolchain_identity.verify(values.toolchain_identity)
    if len(rest) > 1:
        raise UsageError(f"unexpected arguments: {' '.join(rest[1:])}")
    if not (values.target and values.path and values.out_data and values.out_info):
        raise UsageError("--target, --path, --out_data and --out_info are required")
    result = patch_files(
        values.source,
        values.target,
        unescape(values.path, "--path", "--path"),
        values.out_data,
        method=values.method,
        threshold=values.patch_threshold,
        max_diff_size=values.max_diff_size,
    )
    if result.warning:
        print(result.warning, file=sys.stderr)
    jsonio.write(values.out_info, result.to_json())


# --toolchain_identity too: each request names the identity its action was keyed with.
TOOL = persistent_worker.Tool("file_patch", __doc__ or "", (__name__, toolchain_identity.__name__), patch_from_flags)


def run() -> None:
    """`file_patch --persistent_worker`, or one run of `file_patch [@PARAMS | flags...]`."""
    sys.exit(persistent_worker.main(sys.argv, TOOL))


if __name__ == "__main__":
    run()
