#!/bin/bash
# Compiles AOSP's C++ imgdiff (Android 8's bootable/recovery, 2017's external/bsdiff) for
# bench/bench_diff_speed.py --aosp_imgdiff. It fetches nothing: give it a folder holding AOSP's
# own files, unchanged, laid out as
#
#   SRC/recovery/applypatch/imgdiff.cpp
#   SRC/recovery/applypatch/include/applypatch/imgdiff.h
#   SRC/bsdiff/{bsdiff.cc,patch_writer.cc,patch_writer.h,bz2_compressor.cc,bz2_compressor.h,
#               compressor_buffer.cc,logging.h}
#
# and it writes the few declarations those files include but that era's tree does not hold
# (or that Debian's newer libziparchive changed) into BUILD/shim, then links BUILD/imgdiff
# against Debian 12's libdivsufsort-dev, zlib1g-dev, libbz2-dev, android-libbase-dev and
# android-libziparchive-dev. docs/performance.md says where the sources come from.
#
#   bench/build_aosp_imgdiff.sh SRC BUILD
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 SOURCE_FOLDER BUILD_FOLDER" >&2
  exit 2
fi
src=$(realpath "$1")
build=$(realpath -m "$2")
for needed in recovery/applypatch/imgdiff.cpp recovery/applypatch/include/applypatch/imgdiff.h \
  bsdiff/bsdiff.cc bsdiff/patch_writer.cc bsdiff/patch_writer.h bsdiff/bz2_compressor.cc \
  bsdiff/bz2_compressor.h bsdiff/compressor_buffer.cc bsdiff/logging.h; do
  if [[ ! -f $src/$needed ]]; then
    echo "$src/$needed: missing (see the layout at the top of $0)" >&2
    exit 1
  fi
done
mkdir -p "$build/shim/bsdiff" "$build/shim/ziparchive"
shim=$build/shim

# The 2017 library's own header names (its files include them as "bsdiff/x.h").
ln -sfn "$src/bsdiff/patch_writer.h" "$shim/bsdiff/patch_writer.h"
ln -sfn "$src/bsdiff/bz2_compressor.h" "$shim/bsdiff/bz2_compressor.h"
ln -sfn "$src/bsdiff/logging.h" "$shim/bsdiff/logging.h"

cat >"$shim/bsdiff/common.h" <<'EOF'
#pragma once
#include <stddef.h>
#include <stdint.h>
EOF

cat >"$shim/bsdiff/compressor_interface.h" <<'EOF'
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <vector>
namespace bsdiff {
class CompressorInterface {
 public:
  virtual ~CompressorInterface() = default;
  virtual bool Write(const uint8_t* buf, size_t size) = 0;
  virtual bool Finish() = 0;
  virtual const std::vector<uint8_t>& GetCompressedData() = 0;
};
}  // namespace bsdiff
EOF

# Declares what compressor_buffer.cc defines: one fixed output buffer, filled chunks, and
# their concatenation on demand.
cat >"$shim/bsdiff/compressor_buffer.h" <<'EOF'
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <vector>
namespace bsdiff {
class CompressorBuffer {
 public:
  explicit CompressorBuffer(size_t size) : comp_buffer_(size) {}
  uint8_t* buffer_data() { return comp_buffer_.data(); }
  size_t buffer_size() { return comp_buffer_.size(); }
  void AddDataToChunks(size_t data_size);
  const std::vector<uint8_t>& GetCompressedData();
 private:
  std::vector<uint8_t> comp_buffer_;
  std::vector<std::vector<uint8_t>> comp_chunks_;
  std::vector<uint8_t> comp_data_;
};
}  // namespace bsdiff
EOF

# The entry points of bsdiff.cc, under both names the two trees include.
cat >"$shim/bsdiff/bsdiff.h" <<'EOF'
#pragma once
#include <divsufsort.h>
#include <sys/types.h>
namespace bsdiff {
int bsdiff(const char* old_filename, const char* new_filename, const char* patch_filename);
int bsdiff(const u_char* old_buf, off_t oldsize, const u_char* new_buf, off_t newsize,
           const char* patch_filename, saidx_t** I_cache);
}  // namespace bsdiff
EOF
cp "$shim/bsdiff/bsdiff.h" "$shim/bsdiff.h"

# Debian ships Android 11's libziparchive, whose Next() hands out the entry name as a
# std::string; the Android 8 imgdiff.cpp reads it through a ZipString (zip mode only).
cat >"$shim/ziparchive/zip_archive.h" <<'EOF'
#pragma once
#include "/usr/include/android/ziparchive/zip_archive.h"
#include <string>
struct ZipString {
  const uint8_t* name;
  uint16_t name_length;
};
inline int32_t Next(void* cookie, ZipEntry* data, ZipString* name) {
  static thread_local std::string last;
  int32_t result = Next(cookie, data, &last);
  name->name = reinterpret_cast<const uint8_t*>(last.data());
  name->name_length = static_cast<uint16_t>(last.size());
  return result;
}
EOF

# The two command-line entry points: imgdiff() of imgdiff.cpp, and bsdiff.cc's file-to-file
# diff (the same library call, for BSDIFF40 on one large file).
cat >"$shim/imgdiff_main.cpp" <<'EOF'
#include "applypatch/imgdiff.h"
int main(int argc, char** argv) { return imgdiff(argc, const_cast<const char**>(argv)); }
EOF
cat >"$shim/bsdiff_main.cpp" <<'EOF'
#include <stdio.h>
#include "bsdiff/bsdiff.h"
int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s OLD NEW PATCH\n", argv[0]);
    return 2;
  }
  return bsdiff::bsdiff(argv[1], argv[2], argv[3]);
}
EOF

# -O2 as Android's host builds; the shim folder comes first so its ziparchive header wins.
flags=(-std=c++17 -O2 -w -I"$shim" -I"$src/recovery/applypatch/include" -I/usr/include/android)
library=("$src/bsdiff/bsdiff.cc" "$src/bsdiff/patch_writer.cc" "$src/bsdiff/bz2_compressor.cc"
  "$src/bsdiff/compressor_buffer.cc")
g++ "${flags[@]}" "$src/recovery/applypatch/imgdiff.cpp" "$shim/imgdiff_main.cpp" "${library[@]}" \
  -L/usr/lib/x86_64-linux-gnu/android -Wl,-rpath,/usr/lib/x86_64-linux-gnu/android \
  -lziparchive -lbase -llog -ldivsufsort -lbz2 -lz -o "$build/imgdiff"
g++ "${flags[@]}" "$shim/bsdiff_main.cpp" "${library[@]}" -ldivsufsort -lbz2 -o "$build/bsdiff"
echo "$build/imgdiff $build/bsdiff"
