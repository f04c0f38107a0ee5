"""The device ota_apply updates, described by a small JSON config (format: docs/ota_apply.md).

    {"name": "sailfish",                  # ro.product.device: what packages must name
     "system_root": "system",             # the system tree
     "build_file": "build.json",          # the running build: {"device", "fingerprint", "timestamp"}
     "partitions": "partitions.conf",     # applypatch's device config: partitions + cache dir/limit
     "trusted_keys": ["keys/release.pem"],   # optional
     "policy": {"allow_downgrade": false, "require_signature": false}}   # optional

Relative paths are relative to the config file. The partition map and the cache come from
applypatch's own device config (`ota.device.applypatch.device_config`), so `applypatch` and `ota_apply`
read one description of the hardware. The build file is device state, not configuration:
ota_apply rewrites it as the last change of an update (AOSP patches build.prop last for the same
reason: a cut update still reports the old build until everything else is done).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from ota.device.applypatch import device_config
from ota.errors import OtaError
from ota.format import jsonio
from ota.format.build_info import BuildInfo


@dataclass(frozen=True)
class Policy:
    """What this device accepts beyond the package's own preconditions."""

    allow_downgrade: bool = False
    require_signature: bool = True


@dataclass(frozen=True)
class Device:
    """A loaded device config; all paths absolute."""

    config_path: str
    name: str
    system_root: str
    build_file: str
    hardware: device_config.DeviceConfig
    trusted_keys: tuple[str, ...]
    policy: Policy

    @property
    def cache_dir(self) -> str:
        assert self.hardware.cache_dir is not None  # load() guarantees it
        return self.hardware.cache_dir

    def read_build(self) -> BuildInfo:
        """The build the device runs now, from its build file."""
        return BuildInfo.from_json(jsonio.read(self.build_file), self.build_file)


def load(path: str) -> Device:
    """Reads and checks a device config; every problem is one OtaError naming `path` and the field."""
    value = jsonio.read(path)
    base = os.path.dirname(os.path.abspath(path))

    def resolve(field: str, optional: bool = False) -> str:
        text = value.get(field) if isinstance(value, dict) else None
        if text is None and optional:
            return ""
        if not isinstance(text, str) or not text:
            raise OtaError(path, f"{field}: expected a non-empty path string")
        return os.path.join(base, text)

    name = jsonio.get(value, "name", str, path)
    if not name:
        raise OtaError(path, "name: must not be empty")
    hardware = device_config.load(resolve("partitions"))
    if hardware.cache_dir is None:
        raise OtaError(resolve("partitions"), "no 'cache <dir> [<limit>]' line: ota_apply needs a cache")
    keys = value.get("trusted_keys", [])
    if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
        raise OtaError(path, "trusted_keys: expected a list of key file paths")
    policy_value = value.get("policy", {})
    if not isinstance(policy_value, dict):
        raise OtaError(path, "policy: expected an object")
    unknown = set(policy_value) - {"allow_downgrade", "require_signature"}
    if unknown:
        raise OtaError(path, f"policy: unknown key {min(unknown)!r}")
    flags = {}
    for key in ("allow_downgrade", "require_signature"):
        flag = policy_value.get(key, getattr(Policy, key))
        if not isinstance(flag, bool):
            raise OtaError(path, f"policy.{key}: expected true or false")
        flags[key] = flag
    system_root, build_file = resolve("system_root"), resolve("build_file")
    _state_outside_the_tree(path, system_root, build_file, hardware)
    return Device(
        path,
        name,
        system_root,
        build_file,
        hardware,
        tuple(os.path.join(base, k) for k in keys),
        Policy(**flags),
    )


def _state_outside_the_tree(path: str, system_root: str, build_file: str, hardware: device_config.DeviceConfig) -> None:
    """Refuses device state (the cache, the build file, a partition) at or below the system root.

    The update rewrites that tree: a full package's wipe removes every path its target does not
    list, so a cache there would lose the journal and staged data half way through the update it
    records, and a build file or partition image there would be deleted or overwritten as a file
    of the tree. Compared after resolving symlinks, so a link into the tree is caught too.
    """
    root = os.path.realpath(system_root)
    state = [("build_file", build_file), ("the cache directory", hardware.cache_dir or "")]
    state += [(f"partition {entry.name}", entry.path) for entry in hardware.partitions.values()]
    for what, where in state:
        real = os.path.realpath(where) if where else ""
        if real == root or real.startswith(root + os.sep):
            raise OtaError(
                path,
                f"{what} ({where}) is inside the system root ({system_root}), which the update "
                "rewrites; device state must live outside it",
            )


def write_config(path: str, config: dict) -> None:
    """Writes a device config (used by tests and tools that materialize a device)."""
    with open(path, "w", encoding="utf-8") as stream:
        json.dump(config, stream, indent=2, sort_keys=True)
        stream.write("\n")
