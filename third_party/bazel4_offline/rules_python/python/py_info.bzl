"""Offline stand-in for @rules_python//python:py_info.bzl on Bazel 4.2.3."""

load(":private_builtins.bzl", "BuiltinPyInfo")

PyInfo = BuiltinPyInfo
