"""ota_tool: a py_binary that runs the `run()` of one module of //py:ota.

The main script is generated next to the target rather than pointing py_binary at the module file
itself: Python puts the main script's directory first on sys.path, so a module such as
py/ota/cli/bsdiff.py run as a script would shadow same-named modules for everything it imports.
"""

load("@rules_python//python:py_binary.bzl", "py_binary")

def ota_tool(name, module, **kwargs):
    """Declares `name` as a py_binary running `<module>.run()`.

    Args:
      name: target name (usually the command's name).
      module: dotted module path inside //py:ota with a `run()` function, e.g. "ota.cli.bsdiff".
      **kwargs: passed to py_binary (visibility, tags...).
    """
    main = "_%s_main.py" % name
    native.genrule(
        name = "_%s_main" % name,
        outs = [main],
        cmd = "printf 'from %s import run\\nrun()\\n' > $@" % module,
        visibility = ["//visibility:private"],
    )
    py_binary(
        name = name,
        srcs = [main],
        main = main,
        deps = ["//py:ota"],
        **kwargs
    )
