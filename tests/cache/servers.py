"""The two remote caches the checks run on 127.0.0.1: BuildGrid (gRPC, REAPI) and nginx (HTTP, WebDAV).

Each server is started in its own session, its PID is written to `<pid_dir>/<name>.pid` (so the
shell wrapper's EXIT trap can stop it even if this Python process dies), and `stop()` ends it by
that PID. Nothing listens beyond loopback.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import pwd
import signal
import socket
import subprocess
import time

REPO = pathlib.Path(__file__).resolve().parents[2]
BUILDGRID_LOCK = REPO / "third_party" / "buildgrid_requirements_lock.txt"
BUILDGRID_CONFIG = pathlib.Path(__file__).with_name("buildgrid_cache.yml")
NGINX_CONFIG = pathlib.Path(__file__).with_name("nginx_cache.conf")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, log: pathlib.Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}; see {log}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s; see {log}")


@dataclasses.dataclass
class Server:
    """A started server process, stoppable by PID."""

    name: str
    url: str
    process: subprocess.Popen
    pid_file: pathlib.Path
    log: pathlib.Path
    stop_signal: int = signal.SIGTERM

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, self.stop_signal)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.pid_file.unlink(missing_ok=True)


def start(
    name: str,
    argv: list[str],
    env: dict[str, str],
    port: int,
    url: str,
    work: pathlib.Path,
    pid_dir: pathlib.Path,
    stop_signal: int,
    timeout: float | None,
    user: str | None = None,
    cwd: pathlib.Path | None = None,
) -> Server:
    """Starts `argv` (as `user`, in `cwd`: default `work`) and waits for `port` unless timeout is None."""
    log = work / f"{name}.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd or work,
            start_new_session=True,
            user=user,
        )
    pid_file = pid_dir / f"{name}.pid"
    pid_dir.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{process.pid}\n")
    server = Server(name, url, process, pid_file, log, stop_signal)
    try:
        if timeout is not None:
            _wait_for_port(port, process, log, timeout)
    except BaseException:
        server.stop()
        raise
    return server


def buildgrid_venv(python: str, venv_root: pathlib.Path) -> pathlib.Path:
    """A venv with the hash-pinned BuildGrid lock installed; reused while the lock is unchanged."""
    lock_hash = hashlib.sha256(BUILDGRID_LOCK.read_bytes()).hexdigest()[:16]
    venv = venv_root / f"buildgrid-{lock_hash}"
    marker = venv / "rules_ota-lock-installed"
    if marker.exists():
        return venv
    subprocess.run([python, "-m", "venv", "--clear", str(venv)], check=True)
    install = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--require-hashes",
            "--only-binary=:all:",
            "-r",
            str(BUILDGRID_LOCK),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if install.returncode != 0:  # pip's output only when it matters (it warns about every find-links miss)
        raise RuntimeError(f"pip install of {BUILDGRID_LOCK.name} failed:\n{install.stdout}{install.stderr}")
    marker.write_text(lock_hash + "\n")
    return venv


def start_buildgrid(venv: pathlib.Path, work: pathlib.Path, pid_dir: pathlib.Path) -> Server:
    """BuildGrid as a gRPC remote cache (CAS, ByteStream, ActionCache; no scheduler, no database)."""
    port = free_port()
    store = work / "buildgrid"
    store.mkdir(parents=True, exist_ok=True)
    config = store / "cache.yml"
    config.write_text(BUILDGRID_CONFIG.read_text().replace("@PORT@", str(port)))
    env = dict(os.environ, RULES_OTA_BUILDGRID_STORE=str(store))
    argv = [str(venv / "bin" / "bgd"), "server", "start", str(config)]
    return start("buildgrid", argv, env, port, f"grpc://127.0.0.1:{port}", work, pid_dir, signal.SIGTERM, timeout=90)


def start_nginx(nginx: str, work: pathlib.Path, pid_dir: pathlib.Path) -> Server:
    """nginx as an HTTP (WebDAV PUT/GET) remote cache, from Debian's package, under `work`."""
    port = free_port()
    root = work / "nginx"
    for sub in ("cache", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    user_line = ""
    if os.geteuid() == 0:  # the master drops workers to an unprivileged user, who must own the store
        user = "www-data"
        entry = pwd.getpwnam(user)
        for sub in ("cache", "tmp"):
            os.chown(root / sub, entry.pw_uid, entry.pw_gid)
        for parent in (work, root):  # and reach it: mktemp -d makes `work` 0700 (403/500 otherwise)
            os.chmod(parent, os.stat(parent).st_mode | 0o011)
        user_line = f"user {user};"
    config = root / "nginx.conf"
    config.write_text(
        NGINX_CONFIG.read_text()
        .replace("@USER_LINE@", user_line)
        .replace("@ROOT@", str(root))
        .replace("@PORT@", str(port))
    )
    argv = [nginx, "-p", str(root), "-e", str(root / "error.log"), "-c", str(config)]
    # SIGQUIT: graceful shutdown; the master ends its workers and exits.
    return start(
        "nginx", argv, dict(os.environ), port, f"http://127.0.0.1:{port}", work, pid_dir, signal.SIGQUIT, timeout=30
    )
