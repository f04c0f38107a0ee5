"""pytest_test: one Bazel py_test that runs pytest over the given test files."""

load("@rules_python//python:py_test.bzl", "py_test")

def pytest_test(name, srcs, deps = [], data = [], env = {}, **kwargs):
    """A py_test running pytest over `srcs` (test_*.py files and their helper modules).

    Args:
      name: target name.
      srcs: pytest files; files named test_*.py are collected, the others are importable helpers.
      deps: extra py deps; //py:ota, //tests:environment, pytest and hypothesis are always there.
      data: runtime files.
      env: extra environment.
      **kwargs: passed to py_test (size, tags, timeout, shard_count...).
    """
    test_files = [s for s in srcs if s.split("/")[-1].startswith("test_")]
    if not test_files:
        fail("pytest_test %s: no test_*.py among srcs" % name)
    pkg = native.package_name()
    py_test(
        name = name,
        srcs = srcs + ["//tests:pytest_main.py"],
        main = "//tests:pytest_main.py",
        deps = deps + [
            "//py:ota",
            "//tests:environment",
            "@rules_ota_pypi//pytest",
            "@rules_ota_pypi//hypothesis",
        ],
        data = data,
        env = dict(env, OTA_PYTEST_FILES = " ".join([pkg + "/" + f for f in test_files])),
        **kwargs
    )
