"""The fault injector's names for the scratch-name tests, imported from this one place: when the
injector moves (e.g. under ota.testing), only this line changes."""

from ota.fsops import FaultPoint, FsOps, PowerLoss  # noqa: F401  (re-exported)
