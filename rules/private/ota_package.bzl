"""ota_package: a full or incremental OTA package, cached actions per changed file or bucket.

Unchanged detection happens at analysis time: a system path whose File is the same artifact in
the source and the target build, or whose SHA-256 both builds know and find equal (an imported
directory or release archive records digests), gets no action at all (the assembler records KEEP
from the equal hashes of the two manifests, and refuses if they differ). Every other path present
in both builds gets its own OtaFilePatch action, so a rebuild re-runs only the patches whose
inputs changed, and a remote cache serves each patch separately. When the two Files are different
artifacts with equal bytes whose digests are not both known, the action still runs and reports
UNCHANGED cheaply after hashing both inputs.

Small changed files are batched: when both builds recorded a path's size (an imported directory,
a release archive, or `contents` given by hand: OtaTreeInfo.contents) and the two sizes add up to less than `batch_max_bytes`, the path is diffed in the
OtaFilePatchShard bucket its bytes hash to (rules/private/tar_tree.bzl, the same split as a tar
tree's shards), so a diff of a few kilobytes does not pay a whole action's bookkeeping, and a
one-file change re-runs one bucket. Larger files keep an OtaFilePatch action each.
"""

load(":names.bzl", "artifact_name", "escape")
load(":patch_methods.bzl", "METHODS", "add_diff_options", "method_for")
load(":providers.bzl", "OtaBuildInfo", "OtaPackageInfo")
load(":tar_tree.bzl", "file_patch_buckets", "file_patch_shards")
load(":toolchain_identity.bzl", "TOOLCHAIN_IDENTITY_ATTRS", "add_toolchain_identity")

# The basename prefix of a key that may sign inside Bazel (docs/security.md): its private half is
# public, so handing it to a remote cache or executor reveals nothing.
_TEST_KEY_PREFIX = "TEST_ONLY_"

def _check_threshold(ctx):
    text = ctx.attr.patch_threshold
    parts = text.split(".")
    ok = len(parts) <= 2 and parts[0].isdigit() and (len(parts) == 1 or parts[1].isdigit())
    if ok:
        whole = int(parts[0])
        frac = parts[1] if len(parts) == 2 else ""
        ok = (whole == 0 and frac.strip("0") != "") or (whole == 1 and frac.strip("0") == "")
    if not ok:
        fail("ota_package %s: patch_threshold = '%s': expected a decimal number in (0, 1], like 0.95" % (ctx.label, text))
    return text

def _check_max_diff_size(ctx):
    if ctx.attr.max_diff_size < -1:
        fail("ota_package %s: max_diff_size = %d: expected a size in bytes (0 or more), or -1 for the tool's default" % (ctx.label, ctx.attr.max_diff_size))

def _check_methods(ctx, target_files):
    for key, method in ctx.attr.patch_methods.items():
        if method not in METHODS:
            fail("ota_package %s: patch_methods[%s] = '%s': expected one of %s" % (ctx.label, key, method, METHODS))
        if not key.startswith(".") and target_files != None and key not in target_files:
            fail("ota_package %s: patch_methods: '%s' is neither an extension (\".gz\") nor a file of the target build" % (ctx.label, key))

def _build_params(build):
    return {
        "device": build.device,
        "fingerprint": build.fingerprint,
        "system_manifest": build.system.manifest.path,
        "timestamp": build.timestamp,
    }

def _patch_action(ctx, mnemonic, message, path, artifact, method, source, target, prefix):
    """Declares one file_patch action; returns (data File, info File).

    The outputs are `<prefix>/<artifact>.p` and `.json`: `artifact` is a safe name (names.bzl),
    never the install path, which may hold any byte (docs/contracts.md, "File names"). The path
    reaches the tool `escape`d, so the param file keeps one argument per line.
    """
    data = ctx.actions.declare_file("%s/%s.p" % (prefix, artifact))
    info = ctx.actions.declare_file("%s/%s.json" % (prefix, artifact))
    args = ctx.actions.args()
    inputs = [target]
    if source:
        args.add("--source", source)
        inputs.append(source)
    args.add("--target", target)
    args.add("--path", escape(path))
    args.add("--method", method)
    add_diff_options(ctx, args)
    args.add("--out_data", data)
    args.add("--out_info", info)
    inputs.append(add_toolchain_identity(ctx, args))

    # The whole command line goes into a param file (exec paths only, so the key stays the same
    # from any checkout): a persistent worker gets it as one WorkRequest, and without workers
    # (sandboxed, remote execution) the tool reads `@file` itself. docs/rules.md, "Persistent workers".
    args.use_param_file("@%s", use_always = True)
    args.set_param_file_format("multiline")
    ctx.actions.run(
        executable = ctx.executable._file_patch,
        arguments = [args],
        inputs = inputs,
        outputs = [data, info],
        mnemonic = mnemonic,
        progress_message = message,
        execution_requirements = {"supports-workers": "1"},
    )
    return data, info

def _check_builds(ctx, source, target):
    if not source:
        if ctx.attr.downgrade:
            fail("ota_package %s: downgrade applies to incremental packages only (set source)" % ctx.label)
        return
    if source.device != target.device:
        fail("ota_package %s: source device '%s' differs from target device '%s'" % (ctx.label, source.device, target.device))
    if target.timestamp < source.timestamp and not ctx.attr.downgrade:
        fail("ota_package %s: target timestamp %d is older than source timestamp %d; set downgrade = True if that is intended" % (
            ctx.label,
            target.timestamp,
            source.timestamp,
        ))
    if target.timestamp >= source.timestamp and ctx.attr.downgrade:
        fail("ota_package %s: downgrade = True, but the target (%d) is not older than the source (%d)" % (
            ctx.label,
            target.timestamp,
            source.timestamp,
        ))

def _check_signing_key(ctx, key):
    """Only a TEST_ONLY_ key may become an action input (remote caches and executors see inputs)."""
    if key and not key.basename.startswith(_TEST_KEY_PREFIX):
        fail(("ota_package %s: signing_key %s: only a test key (a file named %s*) may sign in a " +
              "Bazel action, whose inputs a remote cache or executor receives. Build the package " +
              "unsigned and sign it on the signing host with `bazel run //tools:ota_sign -- " +
              "--key KEY --in UNSIGNED.zip --out SIGNED.zip` (docs/security.md)") % (
            ctx.label,
            key.short_path,
            _TEST_KEY_PREFIX,
        ))

def _sign_action(ctx, unsigned, key):
    """Declares the OtaSign action; returns the signed package `<name>.zip`."""
    signed = ctx.actions.declare_file(ctx.label.name + ".zip")
    args = ctx.actions.args()
    args.add("--key", key)
    args.add("--in", unsigned)
    args.add("--out", signed)
    identity = add_toolchain_identity(ctx, args)
    ctx.actions.run(
        executable = ctx.executable._ota_sign,
        arguments = [args],
        inputs = [unsigned, key, identity],
        outputs = [signed],
        mnemonic = "OtaSign",
        progress_message = "Signing OTA package %s with test key %s" % (ctx.label, key.basename),
    )
    return signed

def _check_batch_max_bytes(ctx):
    if ctx.attr.batch_max_bytes < 0:
        fail("ota_package %s: batch_max_bytes = %d: expected a size in bytes (0 or more; 0 turns batching off)" % (ctx.label, ctx.attr.batch_max_bytes))

def _system_actions(ctx, source, target, prefix):
    """Declares the system partition's diff actions; returns what the package gets from them.

    One action per changed file, the bucket actions of the small changed files (or the shard
    actions of a tar-backed tree), whole files for new paths, nothing for unchanged ones.
    """

    # A tar-backed tree on either side: its files are patched by shard actions (tar_tree.bzl).
    shards = file_patch_shards(ctx, source, target, prefix + "/system_shards")
    target_files = {} if shards else target.system.tree.files
    source_files = source.system.tree.files if source else {}
    target_sha256s = {} if shards else target.system.tree.sha256s
    source_sha256s = source.system.tree.sha256s if source and not shards else {}
    _check_methods(ctx, None if shards else target_files)

    # Sizes known in both builds (OtaTreeInfo.contents: imported trees, `contents`) let a changed path be batched.
    source_contents = source.system.tree.contents if source else {}
    target_contents = target.system.tree.contents
    batch_max_bytes = ctx.attr.batch_max_bytes

    system = struct(shards = shards, file_patches = [], whole_files = [], inputs = [], infos = [], patched = [], batched = [], whole = [], unchanged = [])
    artifacts = {}  # artifact name -> install path (names.bzl artifact_name)
    unchanged = system.unchanged

    # One pass over the target's paths without a helper call per path: a tree has thousands.
    for path in sorted(target_files.keys()):
        tf = target_files[path]
        sf = source_files.get(path)
        if sf == None:
            system.whole_files.append({"file": tf.path, "path": path})
            system.whole.append(path)
            system.inputs.append(tf)
            continue
        if sf == tf:
            unchanged.append(path)
            continue

        # Unchanged when both builds know the path's SHA-256 at analysis time and the two are equal.
        digest = target_sha256s.get(path)
        if digest != None and source_sha256s.get(path) == digest:
            unchanged.append(path)
            continue
        old = source_contents.get(path)
        new = target_contents.get(path)
        if old != None and new != None and old["size"] + new["size"] < batch_max_bytes:
            system.batched.append(path)
            continue
        data, info = _patch_action(
            ctx,
            "OtaFilePatch",
            "Diffing system/%s" % escape(path),
            path,
            artifact_name(path, artifacts),
            method_for(ctx.attr.patch_methods, path),
            sf,
            tf,
            prefix + "/system",
        )
        system.file_patches.append({"data": data.path, "info": info.path, "path": path})
        system.patched.append(path)
        system.infos.append(info)
        system.inputs.extend([data, info])
    if system.batched:
        system.shards.extend(file_patch_buckets(ctx, source, target, system.batched, prefix + "/system_shards"))
    return system

def _partition_actions(ctx, source, target, prefix):
    """One imgdiff (or whole-image) action per partition image that differs between the builds."""
    partitions = struct(params = [], inputs = [], infos = [])
    for name in sorted(target.partitions.keys()):
        tf = target.partitions[name]
        sf = source.partitions.get(name) if source else None
        if sf != None and sf == tf:
            continue  # the same image in both builds: the package leaves the partition alone
        data, info = _patch_action(
            ctx,
            "OtaBootPatch" if name == "boot" else "OtaPartitionPatch",
            ("Diffing %s.img" % name) if sf else ("Adding whole %s.img" % name),
            name + ".img",
            name + ".img",
            "imgdiff",
            sf,
            tf,
            prefix + "/partitions",
        )
        partitions.params.append({"data": data.path, "info": info.path, "name": name})
        partitions.infos.append(info)
        partitions.inputs.extend([data, info])
    return partitions

def _package_action(ctx, source, target, system, partitions):
    """Writes the assembler's params (docs/contracts.md) and declares the OtaPackage action.

    Returns:
      (params File, package File: `<name>.zip`, or `<name>.unsigned.zip` when a key signs it).
    """
    params = ctx.actions.declare_file(ctx.label.name + ".params.json")
    params_doc = {
        "downgrade": ctx.attr.downgrade,
        "file_patches": system.file_patches,
        "partitions": partitions.params,
        "source": _build_params(source) if source else None,
        "target": _build_params(target),
        "type": "INCREMENTAL" if source else "FULL",
        "whole_files": system.whole_files,
    }
    if system.shards:  # only then, so the params of every other package keep their bytes
        params_doc["file_patch_shards"] = [d.path for d in system.shards]
    ctx.actions.write(params, json.encode(params_doc) + "\n")
    manifests = [target.system.manifest] + ([source.system.manifest] if source else [])
    out = ctx.actions.declare_file(ctx.label.name + (".unsigned.zip" if ctx.file.signing_key else ".zip"))
    args = ctx.actions.args()
    args.add("--params", params)
    args.add("--out", out)
    identity = add_toolchain_identity(ctx, args)

    # As for OtaFilePatch: the command line in a param file, so a persistent worker gets it as one
    # WorkRequest and a one-shot run reads `@file` itself (docs/rules.md, "Persistent workers").
    args.use_param_file("@%s", use_always = True)
    args.set_param_file_format("multiline")
    ctx.actions.run(
        executable = ctx.executable._package,
        arguments = [args],
        inputs = [params, identity] + manifests + system.inputs + partitions.inputs + system.shards,
        outputs = [out],
        mnemonic = "OtaPackage",
        # A persistent worker locally: a one-file rebuild then pays no Python start and imports
        # for the assembler. Where the worker strategy is off, the one-shot run stays unsandboxed:
        # its sandbox (one symlink per input, ~5,000 for a 7,000-file tree: the tool's runfiles,
        # 1,500 then, two per changed file) took 15 s of its 17 s to set up and delete on the
        # 2-core machine (docs/scale.md). The tool opens only the files its params name, all declared
        # inputs; remote execution and the cache key are unaffected.
        execution_requirements = {"no-sandbox": "1", "supports-workers": "1"},
        progress_message = "Assembling %s OTA package %s (%d patches, %d whole files)" % (
            "incremental" if source else "full",
            ctx.label,
            len(system.file_patches),
            len(system.whole_files),
        ),
    )
    return params, out

def _ota_package_impl(ctx):
    target = ctx.attr.target[OtaBuildInfo]
    source = ctx.attr.source[OtaBuildInfo] if ctx.attr.source else None
    _check_builds(ctx, source, target)
    _check_threshold(ctx)
    _check_max_diff_size(ctx)
    _check_batch_max_bytes(ctx)
    _check_signing_key(ctx, ctx.file.signing_key)
    prefix = ctx.label.name + ".patches"
    system = _system_actions(ctx, source, target, prefix)
    partitions = _partition_actions(ctx, source, target, prefix)
    params, out = _package_action(ctx, source, target, system, partitions)
    if ctx.file.signing_key:
        out = _sign_action(ctx, out, ctx.file.signing_key)
    return [
        DefaultInfo(files = depset([out]), runfiles = ctx.runfiles([out])),
        OutputGroupInfo(patch_infos = depset(system.infos + partitions.infos)),
        OtaPackageInfo(
            package = out,
            type = "INCREMENTAL" if source else "FULL",
            params = params,
            patched_paths = system.patched,
            batched_paths = system.batched,
            whole_paths = system.whole,
            unchanged_paths = system.unchanged,
        ),
    ]

ota_package = rule(
    implementation = _ota_package_impl,
    doc = """An OTA package zip (`<name>.zip`): incremental when `source` is set, full otherwise.

Actions: one OtaFilePatch per system path present in both builds as different Files, none for
paths that are the same File or have the same SHA-256 known in both builds; when both builds
recorded the sizes of changed paths (imported directories, release archives, `contents`), those whose sizes add
up to less than `batch_max_bytes` are diffed instead by 32 OtaFilePatchShard bucket actions, each
path in the bucket its bytes hash to (docs/rules.md, "Batches"); one OtaBootPatch for
the boot image (imgdiff), one OtaPartitionPatch per other changed partition; one OtaPackage that
assembles the zip; when either system tree comes from a tar, 32 OtaFilePatchShard actions in place
of the OtaFilePatch ones (docs/rules.md, "Tar input"; `patched_paths`, `whole_paths` and
`unchanged_paths` of OtaPackageInfo are then empty, and path keys of `patch_methods` are not
checked); with
`signing_key`, one OtaSign that writes the signed `<name>.zip` (the unsigned package is the
intermediate `<name>.unsigned.zip`).

Output group `patch_infos`: the info JSON of every patch action (method chosen, sizes, hashes,
warning), e.g. `bazel build //release:incremental_ota --output_groups=+patch_infos`.""",
    attrs = dict(TOOLCHAIN_IDENTITY_ATTRS, **{
        "target": attr.label(
            mandatory = True,
            providers = [OtaBuildInfo],
            doc = "The ota_build devices run after the update.",
        ),
        "source": attr.label(
            providers = [OtaBuildInfo],
            doc = "The ota_build devices run now (often imported with ota_release_archive). " +
                  "Unset: a full package.",
        ),
        "patch_threshold": attr.string(
            default = "0.95",
            doc = "Ship a changed file whole when its patch is larger than this fraction of " +
                  "the target file (AOSP's default 0.95). A decimal number in (0, 1].",
        ),
        "max_diff_size": attr.int(
            default = -1,
            doc = "The memory ceiling of every diff action: a changed file (or partition image) " +
                  "whose source or target is larger than this many bytes ships whole without " +
                  "being diffed. -1: file_patch's default, the largest inputs whose diff needs at " +
                  "most 4.5 GiB (658 MiB with the compiled diff, 241 MiB with bsdiff4; " +
                  "docs/performance.md).",
        ),
        "batch_max_bytes": attr.int(
            default = 1048576,
            doc = "Batch small changed files: a system path whose source and target sizes are " +
                  "both known at analysis time (an imported directory, a release archive, an image's " +
                  "`contents`) and " +
                  "add up to less than this many bytes is diffed in one of 32 " +
                  "OtaFilePatchShard bucket actions (the bucket is a function of the path's " +
                  "bytes alone) instead of an OtaFilePatch action of its own. The package bytes " +
                  "are the same either way. 0 turns batching off (docs/rules.md, \"Batches\").",
        ),
        "patch_methods": attr.string_dict(
            doc = "Diff method per path or per extension: `{\"etc/fonts.bin\": \"bsdiff\", " +
                  "\".gz\": \"bsdiff\"}`. Methods: auto (by extension: .zip/.jar/.apk -> " +
                  "imgdiff_zip, .gz/.img -> imgdiff, else bsdiff), bsdiff, imgdiff, imgdiff_zip.",
        ),
        "downgrade": attr.bool(
            default = False,
            doc = "Allow (and require) a target older than the source. Incremental only.",
        ),
        "signing_key": attr.label(
            allow_single_file = [".pem"],
            doc = "A TEST key (PEM private key whose file name starts with `TEST_ONLY_`) to " +
                  "sign the package with in an OtaSign action. Unset: the package is unsigned. " +
                  "Any other key is an analysis error: production keys never become action " +
                  "inputs; sign with `bazel run //tools:ota_sign` on the signing host instead " +
                  "(docs/security.md).",
        ),
        "_file_patch": attr.label(
            default = "//tools/actions:file_patch",
            executable = True,
            cfg = "exec",
        ),
        "_file_patch_shard": attr.label(
            default = "//tools/actions:file_patch_shard",
            executable = True,
            cfg = "exec",
        ),
        "_package": attr.label(
            default = "//tools/actions:package",
            executable = True,
            cfg = "exec",
        ),
        "_ota_sign": attr.label(
            default = "//tools:ota_sign",
            executable = True,
            cfg = "exec",
        ),
    }),
)
