"""ota_release_archive: a repository rule importing a shipped release archive
(docs/contracts.md#5-release-archive).

It unpacks the archive and writes a BUILD file declaring the release's `ota_system_image` (one label
per file, with modes, owners, directories, symlinks and each file's SHA-256, size and SHA-1 from
META/system_manifest.json as `contents`), its `ota_boot_image` (the prebuilt IMAGES/boot.img) and
its `ota_build` (`@<name>//:build`). An ota_package using it as `source` then needs no action for a
path whose target digest is known and equal, batches a small changed file whose target size is
known (`batch_max_bytes`), and the image's manifest is written while Bazel analyzes, as for an
imported directory: nothing hashes the archive's files again.

Install paths may hold any byte (docs/contracts.md, "File names"): the generated BUILD file
writes every path and link target as an `escape`d literal (pure ASCII), and names every file by
its entry SYSTEM/<index>, never by its path.
"""

load(":names.bzl", "escape")

# The generated BUILD file; every %{KEY} in it is filled in by _ota_release_archive_impl.
_BUILD_TEMPLATE = Label("//rules/private:release_archive.BUILD.tpl")

def _octal(value):
    digits = ""
    v = value
    for _ in range(8):
        digits = "01234567"[v % 8] + digits
        v = v // 8
        if v == 0:
            break
    return "0" + digits

def _fetch(rctx):
    if bool(rctx.attr.archive) == bool(rctx.attr.urls):
        fail("ota_release_archive %s: set exactly one of archive (a local file) and urls" % rctx.name)
    if rctx.attr.urls:
        if not rctx.attr.sha256:
            fail("ota_release_archive %s: urls needs sha256 (a release must be pinned)" % rctx.name)
        rctx.download_and_extract(url = rctx.attr.urls, sha256 = rctx.attr.sha256, type = "zip")
        return
    path = rctx.path(rctx.attr.archive)
    if rctx.attr.sha256:
        rctx.download_and_extract(url = "file://%s" % path, sha256 = rctx.attr.sha256, type = "zip")
    else:
        rctx.extract(path)

def _read_json(rctx, name):
    if not rctx.path(name).exists:
        fail("ota_release_archive %s: %s is missing: not a rules_ota release archive" % (rctx.name, name))
    return json.decode(rctx.read(name))

def _str(value):
    """A Starlark string literal of `value`: pure ASCII whatever bytes it holds, '%' escaped.

    With no '%' (written as its octal escape) no value can spell a `%{KEY}` of the BUILD template.
    """
    return "\"%s\"" % escape(value).replace("%", "\\045")

def _file_label(rctx, index, path):
    """The label of the file that is entry `index` (SYSTEM/<index>, py/ota/actions/release_archive.py).

    An archive written before files were named by index holds SYSTEM/<path>; that still works
    for paths that are valid labels.
    """
    name = "SYSTEM/%d" % index
    if rctx.path(name).exists:
        return name
    if rctx.path("SYSTEM/" + path).exists:
        return "SYSTEM/" + path
    fail("ota_release_archive %s: %s (the file \"%s\") is missing from the archive" % (rctx.name, name, escape(path)))

def _system_substitutions(rctx, manifest):
    """The template keys of the `:system` ota_system_image: one line per manifest entry."""
    lines = {key: [] for key in ("FILES", "DIRS", "SYMLINKS", "MODES", "OWNERS", "CONTENTS")}
    for index, entry in enumerate(manifest["entries"]):
        path = entry["path"]
        kind = entry["kind"]
        if kind == "file":
            lines["FILES"].append("        %s: %s," % (_str(_file_label(rctx, index, path)), _str(path)))
            lines["CONTENTS"].append("        %s: [%s, \"%d\", %s]," % (_str(path), _str(entry["sha256"]), entry["size"], _str(entry["sha1"])))
        elif kind == "dir":
            lines["DIRS"].append("        %s," % _str(path))
        elif kind == "symlink":
            lines["SYMLINKS"].append("        %s: %s," % (_str(path), _str(entry["target"])))
        else:
            fail("ota_release_archive %s: META/system_manifest.json: %s: unknown kind %s" % (rctx.name, _str(path), _str(kind)))
        if kind != "symlink":
            lines["MODES"].append("        %s: %s," % (_str(path), _str(_octal(entry["mode"]))))
        lines["OWNERS"].append("        %s: \"%d:%d\"," % (_str(path), entry["uid"], entry["gid"]))
    return {"%%{%s}" % key: "\n".join(value) for key, value in lines.items()}

def _build_substitutions(rctx, build, names):
    """The template keys of the `:build` ota_build: identity and the other partitions' images."""
    for key in ("device", "fingerprint", "timestamp"):
        if key not in build:
            fail("ota_release_archive %s: META/build.json: %s is missing" % (rctx.name, key))
    if "boot.img" not in names:
        fail("ota_release_archive %s: IMAGES/boot.img is missing" % rctx.name)
    partitions = [
        "        %s: %s," % (_str("IMAGES/" + n), _str(n[:-len(".img")]))
        for n in names
        if n.endswith(".img") and n != "boot.img"
    ]
    return {
        "%{DEVICE}": _str(build["device"]),
        "%{FINGERPRINT}": _str(build["fingerprint"]),
        "%{PARTITIONS}": "\n".join(partitions),
        "%{TIMESTAMP}": "%d" % build["timestamp"],
    }

def _ota_release_archive_impl(rctx):
    _fetch(rctx)
    build = _read_json(rctx, "META/build.json")
    manifest = _read_json(rctx, "META/system_manifest.json")
    images = rctx.path("IMAGES")
    names = sorted([p.basename for p in images.readdir()]) if images.exists else []
    substitutions = _build_substitutions(rctx, build, names)
    substitutions.update(_system_substitutions(rctx, manifest))
    substitutions["%{RULES}"] = _str(rctx.attr.rules_ota_repo + "//rules:defs.bzl")
    rctx.file("WORKSPACE", "workspace(name = %s)\n" % _str(rctx.name))
    rctx.template("BUILD.bazel", _BUILD_TEMPLATE, substitutions = substitutions, executable = False)

_ATTRS = {
    "archive": attr.label(
        allow_single_file = [".zip"],
        doc = "The release archive as a local file (a label in the main repository).",
    ),
    "urls": attr.string_list(doc = "Where to download the archive (mirrors); needs sha256."),
    "sha256": attr.string(doc = "SHA-256 of the archive; required with urls, checked with archive too."),
    "rules_ota_repo": attr.string(
        default = "@rules_ota",
        doc = "How the generated BUILD file names this rule set's repository.",
    ),
}

ota_release_archive = repository_rule(
    implementation = _ota_release_archive_impl,
    doc = """Imports a release archive written by ota_build_archive. Targets of `@<name>`:
`:build` (ota_build), `:system` (ota_system_image), `:boot` (ota_boot_image), and every file.""",
    attrs = _ATTRS,
)
