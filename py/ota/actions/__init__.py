"""Build-side tools of rules_ota: one module per Bazel action (system manifest, per-file patch,
package, release archive, ramdisk, gzip normalization) and the small helpers they share.

Each tool runs as its own Python process per action, so modules import only what their action
needs (file_patch never loads protobuf or the zip writer).
"""
