"""applypatch: patch a file or a raw partition in place, resumably (AOSP-compatible command lines).

Classic form (AOSP 2009-2016; our --flags, if any, may stand anywhere):

  applypatch [-b <bonus>] <src> <tgt|-> <tgt-sha1> <tgt-size> [<src-sha1>:<patch> ...]
  applypatch -c <file|spec> [<sha1> ...]
  applypatch -s <bytes>
  applypatch -l

Android 9+ form:

  applypatch --check <spec>
  applypatch --flash <image> --target <spec>
  applypatch [--bonus <file>] --patch <patch> --source <spec> --target <spec>
  applypatch --license

<src>/<tgt> are file paths or partition specs MTD:<name>:<size>:<sha1>[:<size>:<sha1>...] /
EMMC:<device>:<size>:<sha1>[...]; a SHA-256 (64 hex digits) is accepted wherever a SHA-1 is.
Exit status: 0 success, 1 failure (one line on stderr), 2 command line not understood.
See docs/applypatch.md.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from absl import flags

from ota.device.applypatch import device_config, protocol
from ota.device.applypatch.cache import DEFAULT_RESERVE, Cache, exclusive
from ota.device.applypatch.spec import Digest, parse_partition_spec, parse_size
from ota.device.fsops import FsOps
from ota.errors import OtaError, UsageError
from ota.io import runner
from ota.io.fileio import os_problem

FLAGS = flags.FLAGS

flags.DEFINE_string("check", None, "Android 9+ form: check that the partition spec matches.")
flags.DEFINE_string("flash", None, "Android 9+ form: image file to write to --target.")
flags.DEFINE_string("patch", None, "Android 9+ form: patch file to apply from --source to --target.")
flags.DEFINE_string("source", None, "Android 9+ form: source partition spec.")
flags.DEFINE_string("target", None, "Android 9+ form: target partition spec.")
flags.DEFINE_string("bonus", None, "Android 9+ form: bonus data for IMGDIFF2 patches.")
flags.DEFINE_bool("license", False, "Print the notice naming the components and their licences.")
flags.DEFINE_string("cache_dir", "/cache", "Cache directory for the source backup (saved.file).")
flags.DEFINE_string("device_config", None, "Device config mapping partition names to devices (see docs/applypatch.md).")
flags.DEFINE_integer("cache_limit", None, "Byte budget of the cache directory (default: the filesystem's).")
flags.DEFINE_integer("min_free", DEFAULT_RESERVE, "Bytes that must stay free on the cache and target filesystems.")
flags.DEFINE_integer(
    "piece_size", 1 << 20, "Write piece size in bytes (each piece is one crash point).", lower_bound=4096
)

_MODE_FLAGS = ("check", "flash", "patch", "source", "target", "bonus")

LICENSE_NOTICE = """\
applypatch (rules_ota) uses these components:
  rules_ota applypatch and its patch engine .... the rules_ota licence
  bsdiff4 (Python package; BSDIFF40 apply) ...... BSD licence (2-clause)
  bzip2 / libbzip2 (BSDIFF40 blocks) ............ bzip2 licence (BSD-style)
  zlib (IMGDIFF2 deflate chunks) ................ zlib licence
  absl-py (command line) ........................ Apache License 2.0
The full licence texts ship with each component's distribution."""


def _context() -> protocol.Context:
    config = device_config.load(FLAGS.device_config)
    cache = Cache(
        config.cache_dir or FLAGS.cache_dir,
        config.cache_limit if config.cache_limit is not None else FLAGS.cache_limit,
        FLAGS.min_free,
        FLAGS.piece_size,
    )
    return protocol.Context(config, cache, FsOps(), FLAGS.piece_size)


def _status(message: str) -> int:
    print(message)
    return 0


def _classic(args: list[str]) -> int:
    if not args:
        raise UsageError("no arguments; see --help")
    if args[0] == "-l":
        return _status(LICENSE_NOTICE)
    if args[0] == "-c":
        if len(args) < 2:
            raise UsageError("-c needs <file> [<sha1> ...]")
        digests = [Digest.parse(text, args[1], f"sha1 argument #{i}") for i, text in enumerate(args[2:], 1)]
        return _status(protocol.check(_context(), args[1], digests))
    if args[0] == "-s":
        if len(args) != 2 or not args[1].isdigit():
            raise UsageError("-s needs one decimal byte count")
        context = _context()
        with exclusive(context.cache.directory):
            context.cache.make_free_space(int(args[1]), context.ops)
        return _status(f"{context.cache.directory}: {args[1]} bytes available")
    bonus = None
    if args[0] == "-b":
        if len(args) < 3:
            raise UsageError("-b needs <bonus-file> before <src>")
        bonus, args = args[1], args[2:]
    if len(args) < 4 or (args[0].startswith("-") and args[0] != "-"):
        raise UsageError("expected <src> <tgt|-> <tgt-sha1> <tgt-size> [<src-sha1>:<patch> ...]")
    source, target, tgt_sha, tgt_size = args[:4]
    if target == "-":
        target = source
    patches = []
    for text in args[4:]:
        digest_text, colon, path = text.partition(":")
        if not colon or not path:
            raise UsageError(f"{text!r} is not <src-sha1>:<patch-file>")
        patches.append((Digest.parse(digest_text, text, "source sha1"), path))
    request = protocol.PatchRequest(
        source,
        target,
        parse_size(tgt_size, target, "target size", any_base=True),
        Digest.parse(tgt_sha, target, "target sha1"),
        tuple(patches),
        bonus,
    )
    _patch(request)
    return 0


def _patch(request: protocol.PatchRequest) -> None:
    """Patches holding the cache's lock: one update at a time uses the backup slot (cache.exclusive)."""
    context = _context()
    with exclusive(context.cache.directory):
        protocol.patch(context, request)


def _modern() -> int:
    if FLAGS.license:
        return _status(LICENSE_NOTICE)
    if FLAGS.check:
        if any(FLAGS[name].present for name in _MODE_FLAGS if name != "check"):
            raise UsageError("--check takes no other mode flag")
        return _status(protocol.check(_context(), FLAGS.check, []))
    if not FLAGS.target:
        raise UsageError("--target is required with --flash or --patch")
    if FLAGS.flash:
        if FLAGS.patch or FLAGS.source or FLAGS.bonus:
            raise UsageError("--flash takes only --target")
        context = _context()
        with exclusive(context.cache.directory):
            protocol.flash(context, FLAGS.flash, FLAGS.target)
        return 0
    if not FLAGS.patch or not FLAGS.source:
        raise UsageError("--patch needs --source and --target")
    source, target = parse_partition_spec(FLAGS.source), parse_partition_spec(FLAGS.target)
    if len(target.pairs) != 1:
        raise OtaError(FLAGS.target, "--target needs exactly one size:sha1 pair")
    request = protocol.PatchRequest(
        FLAGS.source,
        FLAGS.target,
        target.pairs[0].size,
        target.pairs[0].digest,
        tuple((pair.digest, FLAGS.patch) for pair in source.pairs),
        FLAGS.bonus,
    )
    _patch(request)
    return 0


def main(argv: Sequence[str]) -> int:
    """Dispatches on the form: positional arguments mean the classic form."""
    args = list(argv[1:])
    modern = FLAGS.license or any(FLAGS[name].present for name in _MODE_FLAGS)
    if args and modern:
        raise UsageError("mixes the classic form with --check/--flash/--patch/--license")
    if not args and not modern:
        raise UsageError("nothing to do; see --help")
    try:
        return _classic(args) if args else _modern()
    except OSError as err:
        # What the layers below did not name themselves (a device that refuses a seek or a read
        # with EINVAL or EIO) is still one line, naming the file (as ota_apply's engine does).
        where = err.filename if isinstance(err.filename, str) else (args[0] if args else "applypatch")
        raise OtaError(where, os_problem(err)) from None


def split_classic(argv: list[str]) -> list[str]:
    """Puts every `--flag` first and '--' before the classic arguments, so absl parses only flags.

    absl would read `-c`, `-s`, `-l`, `-b` (and a lone `-`) as flags; the classic form is parsed
    by `_classic` instead. Our `--flags` may stand anywhere (AOSP scripts call
    `applypatch -c MTD:boot:...` with none; a wrapper may append `--device_config=...`): no
    classic argument starts with `--`. An explicit '--' ends flag parsing as usual.
    """
    ours: list[str] = []
    classic: list[str] = []
    index = 1
    while index < len(argv):
        arg = argv[index]
        if arg == "--":
            classic += argv[index + 1 :]
            break
        if not arg.startswith("--"):
            classic.append(arg)
            index += 1
            continue
        name = arg[2:].split("=", 1)[0]
        takes_value = "=" not in arg and name in FLAGS and not FLAGS[name].boolean
        ours += argv[index : index + 2] if takes_value else [arg]
        index += 2 if takes_value else 1
    return argv[:1] + ours + (["--"] + classic if classic else [])


def run() -> None:
    sys.argv = split_classic(sys.argv)
    runner.run_absl("applypatch", main)


if __name__ == "__main__":
    run()
