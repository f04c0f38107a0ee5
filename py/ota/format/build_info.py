"""Device name, fingerprint and timestamp of one build: the identity a package's pre- and
postconditions name and a release archive's META/build.json records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ota.errors import OtaError
from ota.format import jsonio


@dataclass(frozen=True)
class BuildInfo:
    device: str
    fingerprint: str
    timestamp: int

    def to_json(self) -> dict[str, Any]:
        return {"device": self.device, "fingerprint": self.fingerprint, "timestamp": self.timestamp}

    @classmethod
    def from_json(cls, raw: Any, where: str, prefix: str = "") -> BuildInfo:
        """Parses {"device", "fingerprint", "timestamp"}; `prefix` names the object in errors."""

        def text(key: str) -> str:
            value = jsonio.get(raw, key, str, where, prefix + key)
            if not value or "\n" in value:
                raise OtaError(where, f"{prefix}{key}: must be one non-empty line")
            return value

        timestamp = jsonio.get(raw, "timestamp", int, where, prefix + "timestamp")
        if timestamp < 0:
            raise OtaError(where, f"{prefix}timestamp: {timestamp} is negative")
        return cls(text("device"), text("fingerprint"), timestamp)
