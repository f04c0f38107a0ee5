"""release_files: one gen_files.py action writing a list of generated files (example release)."""

load("//rules:toolchain_identity.bzl", "TOOLCHAIN_IDENTITY_ATTRS", "add_toolchain_identity")

def _release_files_impl(ctx):
    if len(ctx.outputs.outs) != len(ctx.attr.specs):
        fail("release_files %s: %d outs for %d specs" % (ctx.label, len(ctx.outputs.outs), len(ctx.attr.specs)))
    files = []
    for out, spec in zip(ctx.outputs.outs, ctx.attr.specs):
        kind, size, rev, path = spec.split(":", 3)
        files.append({"kind": kind, "out": out.path, "path": path, "rev": int(rev), "size": int(size)})
    spec_file = ctx.actions.declare_file(ctx.label.name + ".spec.json")
    ctx.actions.write(spec_file, json.encode({"files": files}) + "\n")
    args = ctx.actions.args()
    args.add("--spec", spec_file)
    identity = add_toolchain_identity(ctx, args)
    ctx.actions.run(
        executable = ctx.executable._gen,
        arguments = [args],
        inputs = [spec_file, identity],
        outputs = ctx.outputs.outs,
        mnemonic = "OtaExampleFiles",
        progress_message = "Generating %d example files for %s" % (len(files), ctx.label),
    )
    return [DefaultInfo(files = depset(ctx.outputs.outs), runfiles = ctx.runfiles(ctx.outputs.outs))]

release_files = rule(
    implementation = _release_files_impl,
    doc = "Generates `outs` with release/gen_files.py; specs[i] = \"kind:size:rev:path\" for outs[i].",
    attrs = dict(TOOLCHAIN_IDENTITY_ATTRS, **{
        "outs": attr.output_list(mandatory = True),
        "specs": attr.string_list(mandatory = True),
        "_gen": attr.label(default = "//release:gen_files", executable = True, cfg = "exec"),
    }),
)

def generated_tree(name, files):
    """Declares release_files target `name` writing `files` under `name/` in this package.

    Args:
      name: target name, also the directory of the outputs.
      files: dicts with kind, path, rev and size (see layout.bzl).

    Returns:
      {":name/<path>": "<path>"}, ready for ota_system_image's `files` attribute.
    """
    release_files(
        name = name,
        outs = ["%s/%s" % (name, f["path"]) for f in files],
        specs = ["%s:%d:%d:%s" % (f["kind"], f["size"], f["rev"], f["path"]) for f in files],
    )
    return {":%s/%s" % (name, f["path"]): f["path"] for f in files}

def merged(dicts):
    """The union of dicts (BUILD files cannot use **kwargs).

    Args:
      dicts: a list of dicts; later ones win on equal keys.

    Returns:
      A new dict.
    """
    out = {}
    for d in dicts:
        out.update(d)
    return out
