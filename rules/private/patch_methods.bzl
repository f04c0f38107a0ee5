"""ota_package's diff settings: which method file_patch is asked for per system path, and the
threshold and memory ceiling every diff action gets."""

load("@bazel_skylib//lib:paths.bzl", "paths")

METHODS = ["auto", "bsdiff", "imgdiff", "imgdiff_zip"]

def method_for(methods, path):
    """The method of `path` in `methods`: an exact path beats an extension key (".gz"), else "auto".

    The extension is skylib's paths.split_extension, which splits as file_patch's `auto` does
    (os.path.splitext in py/ota/actions/file_patch.py): the last dot of the basename starts it, and a
    name's leading dot does not (".profile" has none), so a key means the same files to both.

    Args:
      methods: the `patch_methods` attribute (path or extension -> method).
      path: a system path of the target build.

    Returns:
      One of METHODS.
    """
    if path in methods:
        return methods[path]
    return methods.get(paths.split_extension(path)[1], "auto")

def add_diff_options(ctx, args):
    """Adds ota_package's `patch_threshold` and, when set, `max_diff_size` to a diff action's args.

    An unset max_diff_size (-1) adds no flag, so the tool's own default applies and the command
    line (hence the action key) is what it was before the attribute existed.
    """
    args.add("--patch_threshold", ctx.attr.patch_threshold)
    if ctx.attr.max_diff_size >= 0:
        args.add("--max_diff_size", ctx.attr.max_diff_size)
