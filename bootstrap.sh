#!/usr/bin/env bash
# Installs what building and testing rules_ota needs on a Debian machine, only what is missing:
# Bazel 4.2.3 (Debian's bazel-bootstrap), Debian's python3 (the pinned interpreter) with pip and the
# CA certificates, a C compiler, and the Debian tools the tests use as interop peers. Safe to run again; does
# nothing when all is there.
set -euo pipefail

packages=()
need() { packages+=("$1"); }

command -v bazel >/dev/null || need bazel-bootstrap
# Bazel libraries WORKSPACE reads from /usr/share/bazel (local repositories, nothing downloaded).
[ -f /usr/share/bazel/tools/skylib/lib/unittest.bzl ] || need bazel-skylib
[ -f /usr/share/bazel/tools/platforms/os/BUILD ] || need bazel-platforms
[ -f /usr/share/bazel/rules/java/java/defs.bzl ] || need bazel-rules-java
# The build's interpreter is /usr/bin/python3; pip fetches the lock's wheels from PyPI over TLS, which
# needs the system trust store (a minimal Debian root, e.g. debootstrap's minbase, has neither).
[ -x /usr/bin/python3 ] || need python3
/usr/bin/python3 -m pip --version >/dev/null 2>&1 || need python3-pip
[ -f /etc/ssl/certs/ca-certificates.crt ] || need ca-certificates
command -v git >/dev/null || need git
# A C compiler: Bazel (//py:ota/native/libbsdiff_scan.so) and `pip install ./py` build the BSDIFF40
# scan from source. Bazel's autodetected toolchain links with -lstdc++ and the C headers come from
# libc6-dev, which minbase roots lack.
command -v gcc >/dev/null || need gcc
command -v g++ >/dev/null || need g++
[ -f /usr/include/stdlib.h ] || need libc6-dev
# Interop peers and helpers used by tests and benchmarks.
command -v mkbootimg >/dev/null || need mkbootimg          # also provides unpack_bootimg
command -v abootimg >/dev/null || need abootimg
command -v bspatch >/dev/null || need bsdiff
command -v xdelta3 >/dev/null || need xdelta3
command -v zstd >/dev/null || need zstd
command -v cpio >/dev/null || need cpio
command -v zip >/dev/null || need zip
command -v unzip >/dev/null || need unzip
command -v losetup >/dev/null || need mount                # util-linux's losetup for loop-device tests
[ -x /usr/sbin/mkfs.ext4 ] || need e2fsprogs               # a real ext4 system root (tests/ota_apply)
[ -x /usr/sbin/nginx ] || need nginx                        # HTTP remote cache in CI

if [ ${#packages[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "bootstrap.sh: missing Debian packages: ${packages[*]} (run as root, or install them)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
for p in "${packages[@]}"; do
  # Capture first, then match: `apt-cache policy | grep -q` under pipefail reads apt-cache's SIGPIPE
  # (grep -q exits at its first match) as "no candidate".
  policy=$(apt-cache policy "$p" 2>/dev/null || true)
  if ! [[ "$policy" =~ Candidate:\ [0-9] ]]; then
    echo "bootstrap.sh: apt offers no '$p' on Debian $(cat /etc/debian_version)." >&2
    if [ "$p" = bazel-bootstrap ]; then
      echo "bootstrap.sh: rules_ota builds with Debian's Bazel 4.2.3 (bookworm's bazel-bootstrap); on a release" \
           "without it, install Bazel 7/8 (bazelisk) and use MODULE.bazel, see README 'Bazel versions'." >&2
    fi
    exit 1
  fi
done
apt-get install -y -qq "${packages[@]}" >/dev/null
echo "bootstrap.sh: installed ${packages[*]}"
