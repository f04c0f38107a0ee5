"""ota_tool: a py_binary that runs the `run()` of one module of //py:ota.

The main script is generated next to the target rather than pointing py_binary at the module file
itself: Python puts the main script's directory first on sys.path, so a module such as
py/ota/cli/bsdiff.py run as a script would shadow same-named modules for everything it imports.
"""

load("@rules_python//python:py_binary.bzl", "py_binary")

# absl's --help prints the main module's docstring and key flags: hand both over from the tool module.
_LAUNCHER = "\\n".join([
    "import sys",
    "from absl import flags",
    "import {module} as tool",
    "sys.modules[\\x22__main__\\x22].__doc__ = tool.__doc__",
    "flags.adopt_module_key_flags(tool)",
    "tool.run()",
    "",
])

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
        cmd = "printf '%s' > $@" % _LAUNCHER.format(module = module),
        visibility = ["//visibility:private"],
    )
    py_binary(
        name = name,
        srcs = [main],
        main = main,
        deps = ["//py:ota"],
        **kwargs
    )
