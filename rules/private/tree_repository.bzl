"""ota_tree_repository: a directory of the build host imported as a system tree.

The scan is py/ota/actions/tree_scan.py, run by the host's python3 with rules_ota's py/ directory
on PYTHONPATH (the way bazel/pip.bzl runs ota.actions.toolchain_identity; the scan needs only the
standard library, so no pip hub). It writes `files/<sha256>` and a BUILD.bazel declaring `:tree`
(docs/contracts.md#10-imported-directory).

Re-fetching: Bazel does not watch a directory outside the workspace for a repository rule before
Bazel 7.1, whose `watch_tree` this rule calls when it exists. Otherwise the repository is fetched
again when its attributes, this file, or the `OTA_TREE_STAMP` environment variable (`--repo_env`)
change, or with `bazel sync --only=<name>` (docs/rules.md, `ota_tree_repository`). A fetch reads
only the files that changed since the last one: the scan keeps its copies and digests in
`external/@<name>.ota_scan_cache` (py/ota/actions/scan_cache.py), next to Bazel's own
`@<name>.marker`, because Bazel empties the repository directory before each fetch.
"""

_STAMP_ENV = "OTA_TREE_STAMP"

# The modules py/ota/actions/tree_scan.py imports (`python3 -S -c 'import ota.actions.tree_scan'`
# lists them; //tests/rules:tree_scan_test checks the list).
_SCAN_IMPORTS = [
    "__init__.py",
    "actions/__init__.py",
    "actions/scan_cache.py",
    "actions/tree.py",
    "errors.py",
    "format/__init__.py",
    "format/hashing.py",
    "format/jsonio.py",
    "format/paths.py",
    "io/__init__.py",
    "io/fileio.py",
]

def _main_workspace_root(rctx):
    if hasattr(rctx, "workspace_root"):
        return str(rctx.workspace_root)
    return str(rctx.path(Label("@//:WORKSPACE")).dirname)

def _ota_tree_repository_impl(rctx):
    root = rctx.attr.path
    if not root:
        fail("ota_tree_repository %s: path is empty" % rctx.name)
    if not root.startswith("/"):
        root = _main_workspace_root(rctx) + "/" + root
    python = rctx.attr.python
    if not python.startswith("/"):
        found = rctx.which(python)
        if not found:
            fail("ota_tree_repository %s: interpreter '%s' not found on PATH" % (rctx.name, python))
        python = str(found)
    if hasattr(rctx, "watch_tree"):
        rctx.watch_tree(root)
    module = rctx.path(Label("//py:ota/actions/tree_scan.py"))

    # Every module the scan imports (its BUILD text, its manifest.json bytes): a change to any of
    # them fetches again, so a repository never keeps what an older scan wrote.
    for imported in _SCAN_IMPORTS:
        rctx.path(Label("//py:ota/" + imported))
    out = rctx.path(".")

    # -S: no site module (the scan needs the standard library only): a few ms of every fetch.
    command = [python, "-B", "-S", "-m", "ota.actions.tree_scan", root, str(out), rctx.attr.rules_ota_repo]
    if rctx.attr.scan_cache:
        command.append("%s/@%s.ota_scan_cache" % (out.dirname, rctx.name))
    rctx.report_progress("Scanning %s" % root)
    result = rctx.execute(
        command,
        environment = {"PYTHONPATH": str(module.dirname.dirname.dirname)},
        timeout = rctx.attr.timeout,
        quiet = True,
    )
    if result.return_code != 0:
        fail(result.stderr.strip() or ("ota_tree_repository %s: the scan of %s exited %d" % (rctx.name, root, result.return_code)))
    rctx.file("WORKSPACE", "workspace(name = \"%s\")\n" % rctx.name)

ota_tree_repository = repository_rule(
    implementation = _ota_tree_repository_impl,
    doc = """Imports a directory of the build host as `@<name>//:tree`, the `tree` input of
ota_system_image and ota_ramdisk: every entry's kind, mode (setuid, setgid and sticky bits included),
uid, gid and symlink target exactly as on the host, empty directories included. Symlinks are
recorded, never followed; nothing outside the directory is read. Devices, FIFOs and sockets are
refused. Regular files are copied to `files/<sha256>`. Fetched again when `OTA_TREE_STAMP`
changes (`--repo_env`), with `bazel sync --only=<name>`, or, on Bazel 7.1+, when the directory
changes.""",
    attrs = {
        "path": attr.string(
            mandatory = True,
            doc = "The directory: absolute, or relative to the main workspace's root. It must not " +
                  "itself be a symlink (name the directory it points to).",
        ),
        "python": attr.string(
            default = "python3",
            doc = "The interpreter that runs the scan (an absolute path, or a name on PATH); " +
                  "Python 3.10 or later, standard library only.",
        ),
        "rules_ota_repo": attr.string(
            default = "@rules_ota",
            doc = "How the generated BUILD file names this rule set's repository.",
        ),
        "scan_cache": attr.bool(
            default = True,
            doc = "Keep the scan's copies and digests between fetches (in " +
                  "`external/@<name>.ota_scan_cache` of the output base), so a fetch reads only " +
                  "the files whose device, inode, size, mtime or ctime changed. False: every " +
                  "fetch reads and copies the whole directory.",
        ),
        "timeout": attr.int(default = 3600, doc = "Seconds the scan may take."),
    },
    environ = [_STAMP_ENV],
)
