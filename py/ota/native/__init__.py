"""Compiled helpers of the engine, loaded through ctypes (no Python headers, only a C compiler).

Bazel builds them as //py:ota/native/libbsdiff_scan.so, `pip install ./py` through py/setup.py.
"""
