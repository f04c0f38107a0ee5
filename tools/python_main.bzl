"""python_main: the main script of a py_binary or py_test that only calls one module's entry point.

Written by Bazel itself (ctx.actions.write), not by a genrule: a genrule is a process, sandboxed,
that every cold build starts once per tool before the tool's first action can run, and a build
that fetches from a remote cache pays a lookup for it. A write action runs inside Bazel.

Why a generated script at all: Python puts the main script's directory first on sys.path, so a
module such as py/ota/cli/bsdiff.py run as a script would shadow same-named modules for
everything it imports (tools/ota_tool.bzl, rules/private/ota_test.bzl).
"""

def _python_main_impl(ctx):
    ctx.actions.write(ctx.outputs.out, "from %s import %s\n%s()\n" % (ctx.attr.module, ctx.attr.function, ctx.attr.function))

python_main = rule(
    implementation = _python_main_impl,
    doc = "Writes `out`, a script that imports `function` from `module` and calls it.",
    attrs = {
        "function": attr.string(default = "run", doc = "The entry point, a function without arguments."),
        "module": attr.string(mandatory = True, doc = "The dotted module path, e.g. `ota.actions.file_patch`."),
        "out": attr.output(mandatory = True, doc = "The script to write, e.g. `_file_patch_main.py`."),
    },
)
