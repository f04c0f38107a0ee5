"""rules_ota: build and apply incremental OTA updates (AOSP-compatible patch formats)."""
