"""all_files: what //tests/docs:references_test scans and resolves against, one filegroup per package."""

def all_files(name = "all_files"):
    """Every file of the calling package (a glob cannot cross package boundaries), for //tests/docs.

    Args:
      name: the filegroup's name; tests/docs/BUILD lists `//<package>:all_files` for every package.
    """
    native.filegroup(
        name = name,
        srcs = native.glob(
            ["**"],
            exclude = ["**/__pycache__/**"],
        ),
        visibility = ["//tests/docs:__pkg__"],
    )
