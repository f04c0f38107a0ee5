"""The fault injector's names for the file-scratch tests, imported from this one place: when the
injector moves (e.g. under ota.testing), only this line changes."""

from ota.fsops import FaultPoint, FsOps, PowerLoss, sweep  # noqa: F401  (re-exported)
