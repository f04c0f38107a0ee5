"""A small analysis-test kit for Bazel 4.2.3 and later (no bazel_skylib offline).

Both rules are `analysis_test = True` rules returning AnalysisTestResultInfo, the mechanism
skylib's analysistest uses: the verdict is reached while Bazel analyzes the test, so a failing
expectation shows up as a failed test with the message below, and nothing runs.
"""

load("//rules:providers.bzl", "OtaPackageInfo")

def _result(errors):
    return [AnalysisTestResultInfo(success = not errors, message = "\n".join(errors))]

def _diff_lists(what, got, want):
    missing = [x for x in want if x not in got]
    extra = [x for x in got if x not in want]
    out = []
    if missing:
        out.append("%s: missing %s" % (what, missing))
    if extra:
        out.append("%s: unexpected %s" % (what, extra))
    if len(got) != len(_set_of(got)):
        out.append("%s: duplicates in %s" % (what, got))
    return out

def _set_of(items):
    return {x: True for x in items}

def _patch_path(action, prefix):
    """The system path an OtaFilePatch action works on, read from its `.p` output's name."""
    for f in action.outputs.to_list():
        if f.basename.endswith(".p") and ("/" + prefix + "/") in f.path:
            return f.path.split("/" + prefix + "/", 1)[1][:-len(".p")]
    return None

def _package_actions_test_impl(ctx):
    target = ctx.attr.package
    info = target[OtaPackageInfo]
    prefix = target.label.name + ".patches/system"
    counts = {}
    paths = []
    errors = []
    for action in target.actions:
        counts[action.mnemonic] = counts.get(action.mnemonic, 0) + 1
        if action.mnemonic == "OtaFilePatch":
            path = _patch_path(action, prefix)
            if path == None:
                errors.append("OtaFilePatch action without a %s/<path>.p output: %s" % (prefix, action))
            else:
                paths.append(path)
    for mnemonic, want in ctx.attr.mnemonic_counts.items():
        if counts.get(mnemonic, 0) != int(want):
            errors.append("%d %s actions, expected %s (all: %s)" % (counts.get(mnemonic, 0), mnemonic, want, counts))
    errors += _diff_lists("OtaFilePatch paths", sorted(paths), sorted(ctx.attr.patched))
    errors += _diff_lists("OtaPackageInfo.patched_paths", info.patched_paths, sorted(ctx.attr.patched))
    if ctx.attr.whole != ["*"]:
        errors += _diff_lists("OtaPackageInfo.whole_paths", info.whole_paths, sorted(ctx.attr.whole))
    errors += _diff_lists("OtaPackageInfo.unchanged_paths", info.unchanged_paths, sorted(ctx.attr.unchanged))
    if info.type != ctx.attr.type:
        errors.append("type %s, expected %s" % (info.type, ctx.attr.type))
    if target[DefaultInfo].files.to_list() != [info.package]:
        errors.append("the default outputs are %s, expected just the package %s" % (target[DefaultInfo].files.to_list(), info.package))
    errors += _check_signing(target, info, ctx.attr.signed)
    return _result(errors)

def _outputs_of(target, mnemonic):
    return [f for a in target.actions if a.mnemonic == mnemonic for f in a.outputs.to_list()]

def _check_signing(target, info, signed):
    """Errors in how the package zip is made, signed or not.

    Signed: OtaPackage writes <name>.unsigned.zip, OtaSign turns it and a TEST_ONLY_ key into the
    package <name>.zip. Unsigned: OtaPackage writes the package <name>.zip itself.
    """
    assembled = _outputs_of(target, "OtaPackage")
    want = target.label.name + (".unsigned.zip" if signed else ".zip")
    if [f.basename for f in assembled] != [want]:
        return ["OtaPackage writes %s, expected %s" % ([f.basename for f in assembled], want)]
    if not signed:
        return [] if info.package == assembled[0] else ["the package is not OtaPackage's output"]
    sign = [a for a in target.actions if a.mnemonic == "OtaSign"]
    if len(sign) != 1:
        return ["%d OtaSign actions, expected 1" % len(sign)]
    errors = []
    if sign[0].outputs.to_list() != [info.package] or info.package.basename != target.label.name + ".zip":
        errors.append("OtaSign writes %s, expected the package %s.zip" % (sign[0].outputs.to_list(), target.label.name))
    inputs = sign[0].inputs.to_list()
    if assembled[0] not in inputs:
        errors.append("OtaSign does not read the unsigned package %s" % assembled[0].path)
    if not [f for f in inputs if f.basename.startswith("TEST_ONLY_") and f.extension == "pem"]:
        errors.append("OtaSign has no TEST_ONLY_*.pem input: %s" % [f.basename for f in inputs])
    return errors

package_actions_test = rule(
    implementation = _package_actions_test_impl,
    analysis_test = True,
    doc = "Checks an ota_package's actions and OtaPackageInfo at analysis time.",
    attrs = {
        "package": attr.label(mandatory = True, providers = [OtaPackageInfo]),
        "type": attr.string(mandatory = True, doc = "FULL or INCREMENTAL"),
        "patched": attr.string_list(doc = "Exactly the paths that must get an OtaFilePatch action."),
        "whole": attr.string_list(doc = "Exactly the whole-file paths; [\"*\"]: not checked."),
        "unchanged": attr.string_list(doc = "Exactly the paths with no action (same File)."),
        "mnemonic_counts": attr.string_dict(doc = "Mnemonic -> exact number of actions (decimal)."),
        "signed": attr.bool(doc = "Whether the package is signed (OtaSign) or OtaPackage's own output."),
    },
)

def _failure_test_impl(ctx):
    # An attribute with a transition is a list of one target on some Bazel versions.
    target = ctx.attr.target[0] if type(ctx.attr.target) == "list" else ctx.attr.target
    causes = target[AnalysisFailureInfo].causes.to_list() if AnalysisFailureInfo in target else []
    if not causes:
        return _result(["%s analyzed without error; expected one containing %r" % (target.label, ctx.attr.message)])
    messages = [c.message for c in causes]
    if not [m for m in messages if ctx.attr.message in m]:
        return _result(["no analysis error of %s contains %r; got: %s" % (target.label, ctx.attr.message, messages)])
    return _result([])

_allow_failures = analysis_test_transition(
    settings = {"//command_line_option:allow_analysis_failures": "True"},
)

analysis_failure_test = rule(
    implementation = _failure_test_impl,
    analysis_test = True,
    doc = "Passes when analyzing `target` fails with an error containing `message`.",
    attrs = {
        "target": attr.label(mandatory = True, cfg = _allow_failures),
        "message": attr.string(mandatory = True, doc = "A substring of the expected error."),
    },
)
