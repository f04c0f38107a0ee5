"""ota_apply: apply a whole OTA package to a device, checked first, journaled, resumable.

Modules, one job each: `device` (the device config), `sysroot` (the system tree without following
symlinks), `plan` (manifest -> ordered idempotent steps), `verify` (checks before and after),
`journal` (finished steps, durable), `execute` (runs the steps), `progress` (bar / lines),
`engine` (the order of it all: `apply_package`).
"""
