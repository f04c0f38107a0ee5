"""package_actions_test: an ota_package's actions and OtaPackageInfo, checked by skylib's analysistest.

The verdict is reached while Bazel analyzes the test (an `analysis_test` rule), so a wrong action
count, path list or provider field fails the test with the assertion's message, and nothing runs.
"""

load("@bazel_skylib//lib:new_sets.bzl", "sets")
load("@bazel_skylib//lib:unittest.bzl", "analysistest", "asserts")
load("//rules:providers.bzl", "OtaPackageInfo")

# buildifier: disable=bzl-visibility
load("//rules/private:names.bzl", "artifact_name")  # names OtaFilePatch outputs as the rule does

def _assert_paths(env, what, want, got):
    """`got` holds the paths of `want`, each once, sorted (OtaPackageInfo's lists are)."""
    asserts.set_equals(env, sets.make(want), sets.make(got), what)
    asserts.equals(env, sorted(sets.to_list(sets.make(got))), got, what + ": sorted, each path once")

def _patch_artifact(action, prefix):
    """The artifact name of an OtaFilePatch action's `<prefix>/<artifact>.p` output, or None."""
    for f in action.outputs.to_list():
        if f.basename.endswith(".p") and ("/" + prefix + "/") in f.path:
            return f.path.split("/" + prefix + "/", 1)[1][:-len(".p")]
    return None

def _outputs_of(actions, mnemonic):
    return [f for a in actions if a.mnemonic == mnemonic for f in a.outputs.to_list()]

def _assert_signing(env, package, signed):
    """How the package zip is made.

    Signed: OtaPackage writes <name>.unsigned.zip, OtaSign turns it and a TEST_ONLY_ key into the
    package <name>.zip. Unsigned: OtaPackage writes the package <name>.zip itself.
    """
    name = analysistest.target_under_test(env).label.name
    actions = analysistest.target_actions(env)
    assembled = _outputs_of(actions, "OtaPackage")
    asserts.equals(env, [name + (".unsigned.zip" if signed else ".zip")], [f.basename for f in assembled], "what OtaPackage writes")
    if not signed:
        asserts.equals(env, [package], assembled, "the package is OtaPackage's output")
        return
    sign = [a for a in actions if a.mnemonic == "OtaSign"]
    asserts.equals(env, 1, len(sign), "OtaSign actions")
    if len(sign) != 1 or len(assembled) != 1:
        return
    asserts.equals(env, [package], sign[0].outputs.to_list(), "what OtaSign writes")
    asserts.equals(env, name + ".zip", package.basename, "the package's name")
    inputs = sign[0].inputs.to_list()
    asserts.true(env, assembled[0] in inputs, "OtaSign does not read the unsigned package %s" % assembled[0].path)
    keys = [f for f in inputs if f.basename.startswith("TEST_ONLY_") and f.extension == "pem"]
    asserts.true(env, keys, "OtaSign has no TEST_ONLY_*.pem input: %s" % [f.basename for f in inputs])

def _package_actions_test_impl(ctx):
    env = analysistest.begin(ctx)
    target = analysistest.target_under_test(env)
    actions = analysistest.target_actions(env)
    info = target[OtaPackageInfo]

    counts = {}
    for action in actions:
        counts[action.mnemonic] = counts.get(action.mnemonic, 0) + 1
    for mnemonic, want in ctx.attr.mnemonic_counts.items():
        asserts.equals(env, int(want), counts.get(mnemonic, 0), "%s actions (all: %s)" % (mnemonic, counts))

    # Artifacts are named after a digest of the path (rules/private/names.bzl), given in sorted
    # path order: naming the expected paths the same way maps each action back to its path.
    prefix = target.label.name + ".patches/system"
    used = {}
    expected = {artifact_name(p, used): p for p in sorted(ctx.attr.patched)}
    patched = []
    for action in actions:
        if action.mnemonic == "OtaFilePatch":
            artifact = _patch_artifact(action, prefix)
            if artifact == None:
                analysistest.fail(env, "OtaFilePatch action without a %s/<artifact>.p output: %s" % (prefix, action))
            else:
                patched.append(expected.get(artifact, "<artifact %s of no expected path>" % artifact))
    _assert_paths(env, "OtaFilePatch paths", ctx.attr.patched, sorted(patched))
    _assert_paths(env, "OtaPackageInfo.patched_paths", ctx.attr.patched, info.patched_paths)
    if ctx.attr.whole != ["*"]:
        _assert_paths(env, "OtaPackageInfo.whole_paths", ctx.attr.whole, info.whole_paths)
    _assert_paths(env, "OtaPackageInfo.unchanged_paths", ctx.attr.unchanged, info.unchanged_paths)
    _assert_paths(env, "OtaPackageInfo.batched_paths", ctx.attr.batched, info.batched_paths)

    asserts.equals(env, ctx.attr.type, info.type, "OtaPackageInfo.type")
    asserts.equals(env, [info.package], target[DefaultInfo].files.to_list(), "the default outputs (just the package)")
    _assert_signing(env, info.package, ctx.attr.signed)
    return analysistest.end(env)

package_actions_test = analysistest.make(
    _package_actions_test_impl,
    attrs = {
        "type": attr.string(mandatory = True, doc = "FULL or INCREMENTAL"),
        "patched": attr.string_list(doc = "Exactly the paths that must get an OtaFilePatch action."),
        "whole": attr.string_list(doc = "Exactly the whole-file paths; [\"*\"]: not checked."),
        "unchanged": attr.string_list(doc = "Exactly the paths with no action (same File)."),
        "batched": attr.string_list(doc = "Exactly the paths diffed in an OtaFilePatchShard bucket."),
        "mnemonic_counts": attr.string_dict(doc = "Mnemonic -> exact number of actions (decimal)."),
        "signed": attr.bool(doc = "Whether the package is signed (OtaSign) or OtaPackage's own output."),
    },
)
