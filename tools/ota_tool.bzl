"""ota_tool: a py_binary that runs the `run()` of one module of //py:ota.

The main script is generated next to the target rather than pointing py_binary at the module file
itself (tools/python_main.bzl says why, and why it is a write action, not a genrule).
"""

load("@rules_python//python:py_binary.bzl", "py_binary")
load(":python_main.bzl", "python_main")

def ota_tool(name, module, **kwargs):
    """Declares `name` as a py_binary running `<module>.run()`.

    Args:
      name: target name (usually the command's name).
      module: dotted module path inside //py:ota with a `run()` function, e.g. "ota.cli.bsdiff".
      **kwargs: passed to py_binary (visibility, tags...).
    """
    main = "_%s_main.py" % name
    python_main(
        name = "_%s_main" % name,
        out = main,
        module = module,
        visibility = ["//visibility:private"],
    )
    py_binary(
        name = name,
        srcs = [main],
        main = main,
        deps = ["//py:ota"],
        **kwargs
    )
