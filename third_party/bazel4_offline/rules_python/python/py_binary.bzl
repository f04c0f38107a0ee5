"""Offline stand-in for @rules_python//python:py_binary.bzl on Bazel 4.2.3 (forwards to the builtin)."""

def py_binary(**kwargs):
    native.py_binary(**kwargs)
