"""What the previous scan of a directory learned, so fetching it again reads only what changed.

Bazel deletes a repository's directory before it fetches it again, so without help every fetch
of an imported tree (py/ota/actions/tree_scan.py) re-reads, re-hashes and re-copies every file of
the tree: seconds for a few hundred MiB, whatever changed. The cache lives next to the repository
(`<output base>/external/@<name>.ota_scan_cache`, a name no repository can have) and holds

* `store/<sha256>`: the copies the scan made, which the repository's `files/<sha256>` hard-link
  (the scan's own copies, never the host's files, so an edit on the host cannot reach them);
* `index.json`: per path, the host file's identity when it was read (device, inode, size,
  mtime and ctime in nanoseconds) and its size, SHA-256 and SHA-1.

A file whose identity is unchanged is not read again: its recorded content is reused and its
stored copy linked. That is the test rsync and Bazel's own digest cache make; ctime is part of it
because no user-space call can set it back, so an edit that restores the mtime is still seen.
The cache is only an optimization: anything unreadable or inconsistent in it makes the scan read
the file, and after each complete scan the store keeps exactly the contents the tree now
references.

The repository's `files` stays a real directory of links rather than one symlink to the store:
a symlink would make Bazel resolve every input through a directory beside the repositories that
no repository rule owns, which Bazel 4 accepts but later versions (and `bazel vendor`, which
copies a repository's directory) give no promise about; the links cost about 0.1 s of a fetch at
7,000 files and 0.3 s at 20,000 (docs/scale.md, "The re-fetch itself").
"""

from __future__ import annotations

import json
import os
import shutil
import stat

from ota.format.hashing import ContentInfo

STORE_DIR = b"store"
INDEX_FILE = b"index.json"
_VERSION = 1
_HEX = "0123456789abcdef"

Identity = tuple[int, int, int, int, int]


def identity(st: os.stat_result) -> Identity:
    """What must be equal for a host file to count as unchanged since it was read."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _digest(value: object, length: int) -> str:
    """`value` if it is `length` lowercase hex digits; ValueError otherwise (a cold cache)."""
    if type(value) is not str or len(value) != length or value.strip(_HEX):
        raise ValueError(value)
    return value


class ScanCache:
    """The previous scan's index (read once) and the current scan's (written by `save`)."""

    def __init__(self, directory: bytes) -> None:
        self.directory = directory
        self.store = os.path.join(directory, STORE_DIR)
        self._store_prefix = self.store + b"/"  # stored() runs once per file: no os.path.join
        self.previous = self._load()
        self.current: dict[bytes, tuple[Identity, ContentInfo]] = {}

    def _load(self) -> dict[bytes, tuple[Identity, ContentInfo]]:
        """The previous index; a missing or damaged one is an empty cache, never an error.

        Rows are checked by type and digest shape only, not through ContentInfo.from_json's
        messages: nothing here is reported, a bad row only means the file is read again."""
        try:
            with open(os.path.join(self.directory, INDEX_FILE), "rb") as stream:
                doc = json.loads(stream.read())
            if doc.get("version") != _VERSION:
                return {}
            entries = {}
            for path, dev, ino, size, mtime, ctime, sha256, sha1 in doc["entries"]:
                if type(size) is not int or size < 0:
                    return {}
                # A non-integer dev, ino, mtime or ctime never equals an lstat's: that file is read.
                content = ContentInfo(size, _digest(sha256, 64), _digest(sha1, 40))
                entries[bytes.fromhex(path)] = ((dev, ino, size, mtime, ctime), content)
            return entries
        except Exception:  # noqa: BLE001 - whatever is wrong with the cache, the scan reads the files
            return {}

    def stored(self, sha256: str) -> bytes:
        """Where the copy of a content is kept."""
        return self._store_prefix + sha256.encode()

    def lookup(self, path: bytes, st: os.stat_result) -> ContentInfo | None:
        """The recorded content of `path` if the host file is unchanged and its copy is intact."""
        known = self.previous.get(path)
        if known is None or known[0] != identity(st):
            return None
        try:
            copy = os.lstat(self.stored(known[1].sha256))
        except OSError:
            return None
        return known[1] if stat.S_ISREG(copy.st_mode) and copy.st_size == known[1].size else None

    def remember(self, path: bytes, st: os.stat_result, content: ContentInfo) -> None:
        self.current[path] = (identity(st), content)

    def save(self) -> None:
        """Writes the current index (atomically) and drops stored contents no path refers to."""
        doc = {
            "entries": [
                [path.hex(), *ident, content.sha256, content.sha1]
                for path, (ident, content) in sorted(self.current.items())
            ],
            "version": _VERSION,
        }
        staging = os.path.join(self.directory, INDEX_FILE + b".incoming")
        with open(staging, "w", encoding="ascii") as stream:
            stream.write(json.dumps(doc, separators=(",", ":")))  # dumps: json's C encoder, dump is pure Python
        os.replace(staging, os.path.join(self.directory, INDEX_FILE))
        keep = {content.sha256.encode() for _, content in self.current.values()}
        for name in os.listdir(self.store):
            if name not in keep:
                os.unlink(os.path.join(self.store, name))


def link_or_copy(source: bytes, destination: bytes) -> None:
    """Hard-links a stored copy into the repository, copying where a link is impossible."""
    try:
        os.link(source, destination)
    except FileExistsError:
        pass  # the same content under another path: one File serves both
    except OSError:
        shutil.copyfile(source, destination)
        os.chmod(destination, 0o644)
