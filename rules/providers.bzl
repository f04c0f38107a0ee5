"""Public providers of rules_ota (documented in //rules/private:providers.bzl and docs/rules.md)."""

load(
    "//rules/private:providers.bzl",
    _OtaBootImageInfo = "OtaBootImageInfo",
    _OtaBuildInfo = "OtaBuildInfo",
    _OtaImportedTreeInfo = "OtaImportedTreeInfo",
    _OtaPackageInfo = "OtaPackageInfo",
    _OtaSystemImageInfo = "OtaSystemImageInfo",
    _OtaTreeInfo = "OtaTreeInfo",
)

OtaBootImageInfo = _OtaBootImageInfo
OtaBuildInfo = _OtaBuildInfo
OtaImportedTreeInfo = _OtaImportedTreeInfo
OtaPackageInfo = _OtaPackageInfo
OtaTreeInfo = _OtaTreeInfo
OtaSystemImageInfo = _OtaSystemImageInfo
