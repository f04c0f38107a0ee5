"""Offline stand-in for @rules_python//python:py_library.bzl on Bazel 4.2.3 (forwards to the builtin)."""

def py_library(**kwargs):
    native.py_library(**kwargs)
