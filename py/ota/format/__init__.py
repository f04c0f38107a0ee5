"""The formats every side shares: the package contract (entry names, path rules, hashes, build
identity), the one hardened zip reader, signatures, BSDIFF40/IMGDIFF2 reading and applying, boot
images, cpio, deflate and gzip. Imports only `ota.io` and `ota.errors` (docs/layout.md).
"""
