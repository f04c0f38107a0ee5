"""What runs on the device: applypatch (one file or partition) and the updater (a whole package).

Imports `ota.format`, `ota.io` and `ota.errors`, never the build actions (docs/layout.md).
"""
