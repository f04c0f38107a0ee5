"""Offline stand-in for @rules_python//python:py_test.bzl on Bazel 4.2.3 (forwards to the builtin)."""

def py_test(**kwargs):
    native.py_test(**kwargs)
