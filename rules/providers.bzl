"""Public providers of rules_ota (documented in //rules/private:providers.bzl and docs/rules.md)."""

load(
    "//rules/private:providers.bzl",
    _BootImageInfo = "BootImageInfo",
    _OtaBuildInfo = "OtaBuildInfo",
    _OtaImportedTreeInfo = "OtaImportedTreeInfo",
    _OtaPackageInfo = "OtaPackageInfo",
    _OtaTreeInfo = "OtaTreeInfo",
    _SystemImageInfo = "SystemImageInfo",
)

BootImageInfo = _BootImageInfo
OtaBuildInfo = _OtaBuildInfo
OtaImportedTreeInfo = _OtaImportedTreeInfo
OtaPackageInfo = _OtaPackageInfo
OtaTreeInfo = _OtaTreeInfo
SystemImageInfo = _SystemImageInfo
