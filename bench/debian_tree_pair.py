#!/usr/bin/env python3
"""Two real system trees, Debian 12 and Debian 13 of the same package list, for the scale bench.

Generated trees (py/ota/testing/generated_trees.py) have the shape of a system but none of its
accidents: systemd's `\\x2d` unit names, certificate names in UTF-8, setuid binaries, files owned
by a user or group other than root, absolute symlinks (into /etc, /usr, /lib, and masked units to
/dev/null), hard links, empty directories, /bin, /lib and /sbin turning into symlinks to usr/,
a Python package whose every file moves between two versions. This script writes the pair a
release engineer starts from, so every step of rules_ota (bench/build_scale_bench.py, then
ota_apply on a device made from the first tree) meets them:

    OUT/v1: the packages of --packages at their bookworm versions, plus --wheel at its first version
    OUT/v2: the same packages at their trixie versions, plus the wheel at its second version

    sudo bench/debian_tree_pair.py --out /var/tmp/debian-pair --cache_dir /var/tmp/debian-pair-cache
    PYTHONPATH=py bench/build_scale_bench.py --source_dir /var/tmp/debian-pair/v1 \\
        --target_dir /var/tmp/debian-pair/v2

It needs root, a Python with absl-py (`/work/venv`, or `pip install ./py`), dpkg-deb, apt-get and
bwrap. Each package is extracted with `dpkg-deb -x` as root, so modes, owners and setuid bits are the
package's; the wheel is unzipped under usr/lib/python3/dist-packages (0755 where the archive marks
a file executable, 0644 otherwise, owned by root, as pip installs it). A list entry `OLD:NEW`
names a package renamed between the releases (libssl3:libssl3t64, python3.11-minimal:
python3.13-minimal): OLD in v1, NEW in v2. Packages are extracted in list order, so where two of
them ship the same path the later one wins in both trees.

Why a sandbox: the trees hold absolute symlinks (usr/lib/ssl/certs -> /etc/ssl/certs, ...), and
an extraction that meets one where a later package has a directory would write through it into
the host. Extraction therefore runs in bubblewrap (`apt-get install bubblewrap`) with the whole
host read-only except --out, and this script never writes through a symlink itself; the counts
are taken with lstat/readlink only.

Fetching uses a private apt state per release under --cache_dir (its own sources.list, lists and
archive cache; an empty dpkg status, so packages installed on this host never stand in for the
release's); the host's apt sources are only read, for the mirror's address when --mirror is not
given. The network needs only that mirror and the Python package index pip uses.
The downloads stay in --cache_dir, so a rerun with the same flags is offline. Prints the pair's
counts: regular files, symlinks, directories, bytes, and the paths that differ.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile

from absl import app, flags

_OUT = flags.DEFINE_string("out", None, "Directory to write v1/ and v2/ into (neither may exist yet).")
_CACHE = flags.DEFINE_string("cache_dir", None, "Downloads and private apt state; reruns reuse them offline.")
_PACKAGES = flags.DEFINE_list(
    "packages",
    [
        "base-files",
        "libc6",
        "libc-bin",
        "libgcc-s1",
        "libstdc++6",
        "libssl3:libssl3t64",
        "zlib1g",
        "libzstd1",
        "liblzma5",
        "libsystemd0",
        "libudev1",
        "systemd",
        "udev",
        "dbus-daemon",
        "libdbus-1-3",
        "kmod",
        "coreutils",
        "bash",
        "dash",
        "util-linux",
        "mount",
        "login",
        "passwd",
        "libpam-modules",
        "sed",
        "grep",
        "tar",
        "findutils",
        "procps",
        "iproute2",
        "e2fsprogs",
        "openssl",
        "ca-certificates",
        "perl-base",
        "adduser",
        "tzdata",
        "locales",
        "libapt-pkg6.0:libapt-pkg7.0",
        "apt",
        "sudo",
        "openssh-client",
        "openssh-server",
        "dbus",
        "nano",
        "man-db",
        "python3.11-minimal:python3.13-minimal",
        "libpython3.11-stdlib:libpython3.13-stdlib",
    ],
    "Debian package names; OLD:NEW for a package renamed between --v1_suite and --v2_suite.",
)
_V1_SUITE = flags.DEFINE_string("v1_suite", "bookworm", "Debian suite of v1 (Debian 12).")
_V2_SUITE = flags.DEFINE_string("v2_suite", "trixie", "Debian suite of v2 (Debian 13).")
_MIRROR = flags.DEFINE_string(
    "mirror", None, "Debian mirror (default: the first Debian archive this host's own apt sources name)."
)
_KEYRING = flags.DEFINE_string(
    "keyring", "/usr/share/keyrings/debian-archive-keyring.gpg", "Keyring the suites' Release files are checked with."
)
_ARCH = flags.DEFINE_string("arch", "amd64", "Debian architecture.")
_WHEEL = flags.DEFINE_string(
    "wheel", "setuptools", "A pure-Python wheel (pip download --no-deps), installed in both trees."
)
_WHEEL_VERSIONS = flags.DEFINE_list("wheel_versions", ["66.1.1", "80.9.0"], "The wheel's version in v1, then in v2.")
_EXTRACT_PLAN = flags.DEFINE_string(
    "extract_plan", None, "Internal: extract the tree a plan file describes (run inside the sandbox)."
)

DIST_PACKAGES = "usr/lib/python3/dist-packages"


@dataclasses.dataclass(frozen=True)
class Plan:
    """What one tree is made of: .deb files in extraction order and one wheel (all in the cache)."""

    tree: str
    debs: list[str]
    wheel: str

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))


def package_names(entries: list[str]) -> tuple[list[str], list[str]]:
    """The v1 and v2 package names of --packages (`OLD:NEW` splits, a plain name is both)."""
    old, new = [], []
    for entry in entries:
        first, _, second = entry.partition(":")
        old.append(first)
        new.append(second or first)
    return old, new


def _apt_options(state: pathlib.Path) -> list[str]:
    """apt options that keep every list, cache and status file of a suite under `state`."""
    return [
        f"-oDir::Etc::sourcelist={state / 'sources.list'}",
        "-oDir::Etc::sourceparts=-",
        f"-oDir::State::Lists={state / 'lists'}",
        f"-oDir::State::status={state / 'status'}",
        f"-oDir::Cache={state / 'cache'}",
        f"-oAPT::Architecture={_ARCH.value}",
        "-oAPT::Architectures=",
        "-oDebug::NoLocking=1",
    ]


def host_mirror() -> str:
    """The first Debian archive (a URI ending in /debian) in this host's apt sources, deb822 or
    one-line style; the security archive and third-party sources do not match."""
    sources = [pathlib.Path("/etc/apt/sources.list"), *sorted(pathlib.Path("/etc/apt/sources.list.d").glob("*"))]
    for source in sources:
        text = source.read_text(errors="replace") if source.is_file() else ""
        for line in text.splitlines():
            words = line.split("#", 1)[0].replace("URIs:", " ").split()
            for word in words:
                if word.startswith(("http://", "https://")) and word.rstrip("/").endswith("/debian"):
                    return word.rstrip("/")
    raise SystemExit("debian_tree_pair: no Debian archive in /etc/apt's sources; give --mirror")


def fetch_debs(suite: str, names: list[str], cache: pathlib.Path) -> list[pathlib.Path]:
    """The .deb of each of `names` in `suite`, downloaded into the cache once (resolved.json
    records which file is which package; a rerun that finds them all does not touch the network)."""
    debs = cache / "debs" / suite
    resolved_file = debs / "resolved.json"
    resolved = json.loads(resolved_file.read_text()) if resolved_file.exists() else {}
    missing = [name for name in names if name not in resolved or not (debs / resolved[name]).is_file()]
    if missing:
        state = cache / "apt" / suite
        for sub in ("lists/partial", "cache/archives/partial"):
            (state / sub).mkdir(parents=True, exist_ok=True)
        mirror = _MIRROR.value or host_mirror()
        (state / "sources.list").write_text(f"deb [signed-by={_KEYRING.value}] {mirror} {suite} main\n")
        (state / "status").write_text("")
        options = _apt_options(state)
        _run(["apt-get", *options, "-qq", "update"], f"apt-get update ({suite})")
        debs.mkdir(parents=True, exist_ok=True)
        _run(["apt-get", *options, "-qq", "download", *missing], f"apt-get download ({suite})", cwd=debs)
        for deb in debs.glob("*.deb"):
            name = _run(["dpkg-deb", "--field", str(deb), "Package"], str(deb)).strip()
            if name in missing:
                resolved[name] = deb.name
        resolved_file.write_text(json.dumps(resolved, indent=1, sort_keys=True) + "\n")
    return [debs / resolved[name] for name in names]


def fetch_wheel(name: str, version: str, cache: pathlib.Path) -> pathlib.Path:
    """`name==version`'s wheel from the package index pip is set up for, downloaded into the cache once."""
    wheels = cache / "wheels"
    normalized = name.replace("-", "_")
    found = sorted(wheels.glob(f"{normalized}-{version}-*.whl"))
    if not found:
        wheels.mkdir(parents=True, exist_ok=True)
        _run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
            + ["--dest", str(wheels), f"{name}=={version}"],
            f"pip download {name}=={version}",
        )
        found = sorted(wheels.glob(f"{normalized}-{version}-*.whl"))
    if len(found) != 1:
        raise SystemExit(f"{wheels}: expected one wheel of {name}=={version}, found {[p.name for p in found]}")
    return found[0]


def _run(argv: list[str], what: str, cwd: pathlib.Path | None = None) -> str:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{what}: failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    return done.stdout


def extract_in_sandbox(plan: Plan, out: pathlib.Path) -> None:
    """Runs this script's --extract_plan inside bubblewrap: everything read-only but `out`."""
    if shutil.which("bwrap") is None:
        raise SystemExit("bwrap: not found; the extraction needs bubblewrap (apt-get install bubblewrap)")
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="debian-tree-plan.") as stream:
        stream.write(plan.to_json())
        stream.flush()
        sandbox = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--bind", str(out), str(out)]
        sandbox += ["--unshare-net", "--die-with-parent", "--"]
        script = [sys.executable, os.path.abspath(__file__), f"--extract_plan={stream.name}"]
        _run(sandbox + script, f"extracting {plan.tree}")


def extract_tree(plan: Plan) -> None:
    """Inside the sandbox: every .deb, then the wheel, into plan.tree."""
    tree = pathlib.Path(plan.tree)
    tree.mkdir(mode=0o755)
    for deb in plan.debs:
        _run(["dpkg-deb", "-x", deb, str(tree)], f"dpkg-deb -x {deb}")
    unpack_wheel(pathlib.Path(plan.wheel), tree, DIST_PACKAGES)


def unpack_wheel(wheel: pathlib.Path, tree: pathlib.Path, destination: str) -> None:
    """Every member of `wheel` under `tree/destination`, as pip lays out a pure-Python wheel (no
    scripts are generated: the pair needs the package's own files). Refuses a member whose path
    leaves the destination or passes through a symlink of the tree."""
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.infolist():
            if member.is_dir():
                continue
            parts = pathlib.PurePosixPath(member.filename).parts
            if not parts or any(part in ("", ".", "..") for part in parts) or member.filename.startswith("/"):
                raise SystemExit(f"{wheel}: member {member.filename!r} leaves the install directory")
            directory = tree
            for part in (*pathlib.PurePosixPath(destination).parts, *parts[:-1]):
                directory = directory / part
                if directory.is_symlink():
                    raise SystemExit(f"{wheel}: {directory} is a symlink; not writing through it")
                directory.mkdir(mode=0o755, exist_ok=True)
            path = directory / parts[-1]
            if path.is_symlink() or path.exists():
                raise SystemExit(f"{wheel}: {path} already exists in the tree")
            executable = (member.external_attr >> 16) & 0o111
            with archive.open(member) as source, open(path, "xb") as target:
                shutil.copyfileobj(source, target)
            path.chmod(0o755 if executable else 0o644)


@dataclasses.dataclass
class Counts:
    """One tree's entries by kind, from lstat: path -> (mode, uid, gid, size) or link target."""

    root: bytes
    files: dict[bytes, tuple[int, int, int, int]] = dataclasses.field(default_factory=dict)
    symlinks: dict[bytes, bytes] = dataclasses.field(default_factory=dict)
    dirs: dict[bytes, tuple[int, int, int]] = dataclasses.field(default_factory=dict)
    empty_dirs: int = 0
    hard_linked: int = 0  # regular files with more than one name

    @property
    def bytes(self) -> int:
        return sum(entry[3] for entry in self.files.values())

    def summary(self, name: str) -> str:
        special = sum(1 for mode, _, _, _ in self.files.values() if mode & 0o6000)
        owned = sum(1 for entry in [*self.files.values(), *self.dirs.values()] if entry[1:3] != (0, 0))
        non_ascii = sum(1 for path in [*self.files, *self.symlinks, *self.dirs] if not path.isascii())
        absolute = sum(1 for target in self.symlinks.values() if target.startswith(b"/"))
        return (
            f"{name}: {len(self.files)} files, {len(self.symlinks)} symlinks ({absolute} absolute), "
            f"{len(self.dirs)} dirs ({self.empty_dirs} empty), {self.bytes} bytes ({self.bytes / 2**20:.1f} MiB); "
            f"{special} setuid/setgid files, {owned} files and dirs not root:root, {self.hard_linked} hard-linked "
            f"files, {non_ascii} non-ASCII names"
        )


def count_tree(root: pathlib.Path) -> Counts:
    """Walks `root` with os.scandir (bytes names, never following a symlink)."""
    counts = Counts(os.fsencode(root))
    pending = [b""]
    while pending:
        relative = pending.pop()
        with os.scandir(os.path.join(counts.root, relative)) as scan:
            entries = list(scan)
        counts.empty_dirs += bool(relative) and not entries
        for entry in entries:
            path = os.path.join(relative, entry.name) if relative else entry.name
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISLNK(info.st_mode):
                counts.symlinks[path] = os.readlink(entry.path)
            elif stat.S_ISDIR(info.st_mode):
                counts.dirs[path] = (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid)
                pending.append(path)
            elif stat.S_ISREG(info.st_mode):
                counts.files[path] = (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid, info.st_size)
                counts.hard_linked += info.st_nlink > 1
            else:
                raise SystemExit(f"{entry.path!r}: neither a file, a directory nor a symlink")
    return counts


def _same_bytes(first: bytes, second: bytes) -> bool:
    with open(first, "rb") as a, open(second, "rb") as b:
        while True:
            chunk = a.read(1 << 20)
            if chunk != b.read(1 << 20):
                return False
            if not chunk:
                return True


def describe_pair(v1: pathlib.Path, v2: pathlib.Path) -> list[str]:
    """The counts a release engineer asks about: per tree, and what changed between them."""
    old, new = count_tree(v1), count_tree(v2)
    common = old.files.keys() & new.files.keys()
    changed = [
        path
        for path in sorted(common)
        if old.files[path][3] != new.files[path][3]
        or not _same_bytes(os.path.join(old.root, path), os.path.join(new.root, path))
    ]
    added = new.files.keys() - old.files.keys()
    removed = old.files.keys() - new.files.keys()
    common_links = old.symlinks.keys() & new.symlinks.keys()

    def mib(paths: object) -> str:
        return f"{sum(new.files[path][3] for path in paths) / 2**20:.1f} MiB"

    return [
        old.summary("v1"),
        new.summary("v2"),
        (
            f"v1 -> v2: {len(changed)} changed files ({mib(changed)} in v2), {len(common) - len(changed)} unchanged, "
            f"{len(added)} added ({mib(added)}), {len(removed)} removed; "
            f"{sum(1 for path in common if old.files[path][:3] != new.files[path][:3])} files with a new mode or owner; "
            f"symlinks: {sum(1 for path in common_links if old.symlinks[path] != new.symlinks[path])} retargeted, "
            f"{len(new.symlinks.keys() - old.symlinks.keys())} added, {len(old.symlinks.keys() - new.symlinks.keys())} "
            f"removed; {len(old.dirs.keys() & new.symlinks.keys())} directories become symlinks"
        ),
    ]


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if _EXTRACT_PLAN.value:
        extract_tree(Plan(**json.loads(pathlib.Path(_EXTRACT_PLAN.value).read_text())))
        return 0
    if not _OUT.value or not _CACHE.value:
        raise app.UsageError("--out and --cache_dir are required")
    if os.geteuid() != 0:
        raise SystemExit("debian_tree_pair: run as root: dpkg-deb -x keeps owners and setuid bits only for root")
    if len(_WHEEL_VERSIONS.value) != 2:
        raise app.UsageError("--wheel_versions: give two versions, v1's then v2's")
    out, cache = pathlib.Path(_OUT.value).resolve(), pathlib.Path(_CACHE.value).resolve()
    for name in ("v1", "v2"):
        if os.path.lexists(out / name):
            raise SystemExit(f"{out / name}: already exists; give a new --out (the cache makes a rerun offline)")
    out.mkdir(parents=True, exist_ok=True)
    plans = []
    for name, suite, packages, version in zip(
        ("v1", "v2"),
        (_V1_SUITE.value, _V2_SUITE.value),
        package_names(_PACKAGES.value),
        _WHEEL_VERSIONS.value,
        strict=True,
    ):
        debs = fetch_debs(suite, packages, cache)
        wheel = fetch_wheel(_WHEEL.value, version, cache)
        plans.append(Plan(str(out / name), [str(deb) for deb in debs], str(wheel)))
        print(
            f"{name} ({suite}): "
            + ", ".join(pathlib.Path(deb).name.removesuffix(".deb") for deb in debs)
            + f", {wheel.name}"
        )
    for plan in plans:
        extract_in_sandbox(plan, out)
    for line in describe_pair(out / "v1", out / "v2"):
        print(line)
    return 0


if __name__ == "__main__":
    app.run(main)
