"""Tool plumbing below every floor: bounded file I/O, the absl entry wrapper, forked workers.

Nothing here knows the OTA formats; it imports only `ota.errors` (docs/layout.md).
"""
