"""The file list of the example release, computed at loading time (no file is checked in).

Each system file is (path, kind, size, rev): gen_files.py turns that into bytes. v1 is the
source build, v2 the target. v2 changes some files (rev 1), removes some and adds some; every
file the two builds share unchanged comes from one "common" generator target, so both builds
hold the same File and the ota_package needs no action for it. Changed and removed files come
from a v1-only generator, changed and added ones from a v2-only generator.
"""

# One row per category: path pattern ({sub}: a subdirectory picked from `subdirs`; {n}: the index,
# zero-padded to `width` digits),
# number of files in v1, generator kind, smallest size and size spread in bytes.
_CATEGORIES = [
    struct(pattern = "bin/tool{n}", width = 3, subdirs = [], count = 110, kind = "elf", size = 8192, spread = 110000),
    struct(pattern = "lib/lib{sub}{n}.so", width = 2, subdirs = ["c", "m", "ssl", "crypto", "z", "ui", "media", "gl"], count = 80, kind = "elf", size = 24576, spread = 260000),
    struct(pattern = "lib/modules/{sub}/mod{n}.ko", width = 3, subdirs = ["net", "fs", "drivers/usb", "drivers/gpu", "sound"], count = 40, kind = "elf", size = 8192, spread = 110000),
    struct(pattern = "etc/{sub}/conf{n}.conf", width = 3, subdirs = ["init", "permissions", "security", "audio", "wifi", "vintf/manifest"], count = 120, kind = "text", size = 512, spread = 20000),
    struct(pattern = "usr/share/man/man{sub}/page{n}.1.gz", width = 3, subdirs = ["1", "5", "8"], count = 70, kind = "gz", size = 2048, spread = 40000),
    struct(pattern = "app/{sub}/App{n}.apk", width = 2, subdirs = ["Settings", "Camera", "Gallery", "Launcher"], count = 12, kind = "zip", size = 200000, spread = 1000000),
    struct(pattern = "framework/fw{n}.jar", width = 2, subdirs = [], count = 8, kind = "zip", size = 100000, spread = 400000),
    struct(pattern = "firmware/blob{n}.bin", width = 2, subdirs = [], count = 6, kind = "random", size = 65536, spread = 450000),
    struct(pattern = "usr/share/doc/pkg{sub}/doc{n}.txt", width = 3, subdirs = ["a/readme", "b", "c/notes/old", "d"], count = 60, kind = "text", size = 256, spread = 12000),
]

# Which v1 files change in v2 (rev 1), which are removed, and how many are added per category.
def _changed(i):
    return i % 17 == 3

def _removed(i):
    return i % 41 == 7

_ADDED_PER_CATEGORY = 2

# Per-path revision overrides for v2 (path -> rev). Empty in the checked-in release; the
# incremental-rebuild test sets one entry to change exactly one v2 file.
V2_REVISION_OVERRIDES = {}

def _padded(i, width):
    text = str(i)
    return "0" * (width - len(text)) + text

def _path(cat, i):
    sub = cat.subdirs[i % len(cat.subdirs)] if cat.subdirs else ""
    return cat.pattern.format(sub = sub, n = _padded(i, cat.width))

def _size(cat, i):
    return cat.size + ((i * 7919 + 13) % 101) * cat.spread // 100

def _file(cat, i, rev):
    return {"kind": cat.kind, "path": _path(cat, i), "rev": rev, "size": _size(cat, i)}

def release_files():
    """The system files of v1 and v2, split by the generator target that writes them.

    Returns:
      struct(common, v1_only, v2_only): lists of dicts with kind, path, rev and size.
    """
    common, v1_only, v2_only = [], [], []
    for cat in _CATEGORIES:
        for i in range(cat.count + _ADDED_PER_CATEGORY):
            in_v1 = i < cat.count
            in_v2 = not _removed(i)
            v2_rev = 1 if _changed(i) else 0
            path = _path(cat, i)
            v2_rev = V2_REVISION_OVERRIDES.get(path, v2_rev)
            if in_v1 and in_v2 and v2_rev == 0:
                common.append(_file(cat, i, 0))
                continue
            if in_v1:
                v1_only.append(_file(cat, i, 0))
            if in_v2:
                v2_only.append(_file(cat, i, v2_rev))
    return struct(common = common, v1_only = v1_only, v2_only = v2_only)

def release_symlinks(version):
    """Toolbox-style symlinks: v2 drops one, adds one and retargets one.

    Args:
      version: 1 or 2.

    Returns:
      dict: link path -> target, for ota_system_image's `symlinks`.
    """
    links = {}
    for i in range(24):
        links["bin/alias" + _padded(i, 2)] = "tool" + _padded(i * 3, 3)
    links["lib/libc.so"] = "libc00.so"
    links["lib/libssl.so"] = "libssl02.so"
    if version == 2:
        links.pop("bin/alias05")
        links["bin/alias30"] = "tool090"
        links["bin/alias07"] = "tool100"
    return links
