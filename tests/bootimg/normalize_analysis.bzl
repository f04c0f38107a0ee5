"""boot_image_normalize_test: the OtaBootNormalize action of an ota_boot_image(src, normalize_src), checked
by skylib's analysistest (the action, its key inputs and the provider)."""

load("@bazel_skylib//lib:unittest.bzl", "analysistest", "asserts")
load("//rules:providers.bzl", "OtaBootImageInfo")

def _boot_image_normalize_test_impl(ctx):
    env = analysistest.begin(ctx)
    target = analysistest.target_under_test(env)
    actions = [a for a in analysistest.target_actions(env) if a.mnemonic.startswith("Ota")]
    asserts.equals(env, ["OtaBootNormalize"], [a.mnemonic for a in actions])
    action = actions[0]
    inputs = [f.short_path for f in action.inputs.to_list()]
    src = target[OtaBootImageInfo].image
    asserts.true(env, ctx.file.src.short_path in inputs, "the prebuilt image is an input: %s" % inputs)
    identity = [p for p in inputs if "toolchain_identity/" in p]
    asserts.equals(env, 1, len(identity), "the toolchain identity is an input: %s" % inputs)
    argv = action.argv
    asserts.true(env, "normalize" in argv, "ota_bootimg normalize: %s" % argv)
    asserts.true(env, "--toolchain_identity" in argv, "the identity is on the command line: %s" % argv)
    asserts.equals(env, ctx.attr.drop_signature, "--drop_signature" in argv)
    asserts.equals(env, [src], action.outputs.to_list())
    asserts.true(env, target[OtaBootImageInfo].normalized)
    asserts.false(env, target[OtaBootImageInfo].prebuilt)
    return analysistest.end(env)

boot_image_normalize_test = analysistest.make(
    _boot_image_normalize_test_impl,
    attrs = {
        "src": attr.label(allow_single_file = True, doc = "The ota_boot_image's src."),
        "drop_signature": attr.bool(doc = "Whether the ota_boot_image sets drop_signature."),
    },
)
