"""Binds the builtin PyInfo to another name so py_info.bzl can re-export it as PyInfo."""

BuiltinPyInfo = PyInfo
