"""Providers of rules_ota. Public names are re-exported by //rules:providers.bzl."""

OtaTreeInfo = provider(
    doc = """A file tree (a system image or a ramdisk) as known at analysis time.

Every regular file is a Bazel File, so consumers can compare two trees path by path without
running anything: the same File in two trees means the same bytes.""",
    fields = {
        "tree_json": "File: the tree description (docs/contracts.md#1-tree-description): every entry with path, " +
                     "kind, mode, uid, gid, and the exec path of each regular file.",
        "entries": "list of dicts, sorted by path: the entries of tree_json, with a regular " +
                   "file's `file` holding its File instead of its exec path.",
        "files": "dict: install path (string) -> File, for every regular file.",
        "files_depset": "depset of File: the values of `files`, for action inputs.",
        "sha256s": "dict: install path (string) -> lowercase hex SHA-256, for the regular files " +
                   "whose digest is known while Bazel analyzes (an imported directory, a release " +
                   "archive); ota_package treats a path with equal known digests in both builds " +
                   "as unchanged without an action.",
        "contents": "dict: install path (string) -> {\"sha1\", \"sha256\", \"size\"}, for the " +
                    "regular files whose whole manifest entry is known while Bazel analyzes (an " +
                    "imported directory, a release archive, ota_system_image's `contents`): the system manifest is then written without hashing, " +
                    "and ota_package batches small changed files by their sizes.",
        "tar_shards": "list of directory Files, for a tree read from a tar archive " +
                      "(rules/private/tar_tree.bzl; `entries` and `files` are then empty): " +
                      "the regular files by shard. Unset for a tree known at analysis time.",
    },
)

OtaImportedTreeInfo = provider(
    doc = """A directory tree imported by ota_tree_repository (its `:tree` target), for the `tree`
attribute of ota_system_image and ota_ramdisk.""",
    fields = {
        "entries": "list of dicts, sorted by path, each checked: the tree entries " +
                   "(OtaTreeInfo's `entries`) with the mode, uid and gid recorded on the host.",
        "complete": "bool: every entry's parent directory is an entry too (a scan records " +
                    "all); else an image adds the missing ones with its defaults.",
        "files": "dict: install path -> File (named by its digest), for every regular file.",
        "files_depset": "depset of File: the values of `files`, in path order.",
        "sha256s": "dict: install path -> SHA-256, for every regular file.",
        "contents": "dict: install path -> {\"sha1\", \"sha256\", \"size\"}, for every regular file.",
        "manifest": "File or None: the system manifest of the tree alone " +
                    "(docs/contracts.md#2-system-manifest), written by the scan.",
    },
)

OtaSystemImageInfo = provider(
    doc = "A system image: its tree and the manifest (sizes and hashes) computed from it.",
    fields = {
        "tree": "OtaTreeInfo of the system root.",
        "manifest": "File: the system manifest (docs/contracts.md#2-system-manifest): the tree's entries with " +
                    "size, sha256 and sha1 for every regular file.",
    },
)

OtaBootImageInfo = provider(
    doc = "An Android boot image, built by ota_boot_image or taken as a prebuilt file.",
    fields = {
        "image": "File: the boot image.",
        "header_version": "int: boot image header version (0-4), or -1 for a prebuilt `src` " +
                          "image (not inspected at analysis time).",
        "prebuilt": "bool: True when the image is a `src` file used as it is.",
        "normalized": "bool: True when the kernel and ramdisk were recompressed by zlib where " +
                      "they were gzip streams zlib could not reproduce.",
    },
)

OtaBuildInfo = provider(
    doc = """One device build: what a device runs after installing it.

An ota_package compares two of these (source and target) file by file.""",
    fields = {
        "device": "string: device name (ro.product.device).",
        "fingerprint": "string: build fingerprint (ro.build.fingerprint).",
        "timestamp": "int: build time, seconds since the epoch (ro.build.date.utc).",
        "build_json": "File: META/build.json of the release archive (device, fingerprint, " +
                      "timestamp).",
        "boot": "OtaBootImageInfo of the boot partition.",
        "system": "OtaSystemImageInfo of the system partition.",
        "partitions": "dict: partition name -> File, every raw partition image including " +
                      "\"boot\".",
    },
)

OtaPackageInfo = provider(
    doc = "An OTA package (zip with manifest.pb, patches and whole files).",
    fields = {
        "package": "File: the package zip.",
        "type": "string: \"FULL\" or \"INCREMENTAL\".",
        "params": "File: the parameters the package assembler read (docs/contracts.md#4-package-parameters).",
        "patched_paths": "list of string: system paths that got an OtaFilePatch action " +
                         "(present in both builds as different Files, without equal known " +
                         "SHA-256s), sorted.",
        "batched_paths": "list of string: changed system paths diffed in an OtaFilePatchShard " +
                         "bucket action instead (ota_package's `batch_max_bytes`), sorted.",
        "whole_paths": "list of string: system paths shipped whole without a diff (new in the " +
                       "target, or every file of a full package), sorted.",
        "unchanged_paths": "list of string: system paths that are the same File in both " +
                           "builds, or whose SHA-256 both builds know to be equal (no action at " +
                           "all), sorted.",
    },
)
