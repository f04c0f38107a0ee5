"""A remote-execution engine on 127.0.0.1: PostgreSQL, BuildGrid with its SQL scheduler, bots workers.

Everything runs under the checks' scratch directory and is stopped by PID (tests/cache/servers.py
writes each PID to `<pid_dir>/<name>.pid`, so the shell wrapper's EXIT trap can stop it too).
PostgreSQL refuses to run as root, so it runs as Debian's `postgres` user; the workers run as the
caller (root in CI) and drop each action to `nobody` (tests/remote_exec/bots_worker.py).
"""

from __future__ import annotations

import dataclasses
import glob
import os
import pathlib
import pwd
import signal
import subprocess
import time

from tests.cache import servers

CONFIG = pathlib.Path(__file__).with_name("buildgrid_exec.yml")
WORKER = pathlib.Path(__file__).with_name("bots_worker.py")
DATABASE_USER = "bgd"


def postgres_bin() -> pathlib.Path:
    """The bin directory of the newest PostgreSQL Debian installed (package `postgresql`)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
    return pathlib.Path(found[-1]).parent


def start_postgres(work: pathlib.Path, pid_dir: pathlib.Path) -> tuple[servers.Server, str]:
    """A throw-away PostgreSQL cluster (no fsync: it only holds the scheduler's queue) and its URL."""
    account = pwd.getpwnam("postgres") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
    home = work / "postgres"
    data = home / "data"
    home.mkdir(parents=True, exist_ok=True)
    os.chown(home, account.pw_uid, account.pw_gid)
    user = account.pw_name if os.geteuid() == 0 else None
    binaries = postgres_bin()
    subprocess.run(
        [str(binaries / "initdb"), "-D", str(data), "-U", DATABASE_USER, "--auth=trust", "-E", "UTF8", "--no-sync"],
        user=user,
        cwd=home,
        check=True,
        capture_output=True,
    )
    port = servers.free_port()
    argv = [
        str(binaries / "postgres"),
        "-D",
        str(data),
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-k",
        str(home),
        "-c",
        "fsync=off",
        "-c",
        "synchronous_commit=off",
        "-c",
        "full_page_writes=off",
        "-c",
        "max_connections=200",
    ]
    url = f"postgresql://{DATABASE_USER}@127.0.0.1:{port}/postgres"
    # SIGINT: PostgreSQL's fast shutdown (SIGTERM waits for every client to leave).
    server = servers.start(
        "postgres", argv, dict(os.environ), port, url, work, pid_dir, signal.SIGINT, 60, user=user, cwd=home
    )
    return server, url


def start_buildgrid(
    venv: pathlib.Path, work: pathlib.Path, pid_dir: pathlib.Path, database: str, instance: str
) -> servers.Server:
    """BuildGrid with Execution and Bots services on `instance`, its schema migrated into `database`."""
    subprocess.run([str(venv / "bin" / "bgd"), "migrate", "apply", database], check=True, capture_output=True)
    port = servers.free_port()
    store = work / "buildgrid-exec"
    store.mkdir(parents=True, exist_ok=True)
    config = store / "exec.yml"
    text = CONFIG.read_text()
    for key, value in (("@PORT@", str(port)), ("@INSTANCE@", instance), ("@DATABASE@", database)):
        text = text.replace(key, value)
    config.write_text(text)
    env = dict(os.environ, RULES_OTA_BUILDGRID_STORE=str(store))
    argv = [str(venv / "bin" / "bgd"), "server", "start", str(config)]
    return servers.start(
        "buildgrid-exec", argv, env, port, f"grpc://127.0.0.1:{port}", work, pid_dir, signal.SIGTERM, 90
    )


@dataclasses.dataclass
class Worker:
    """A started bots worker and the directory it owns."""

    server: servers.Server
    directory: pathlib.Path

    @property
    def actions_log(self) -> pathlib.Path:
        return self.directory / "actions.jsonl"


def start_workers(
    venv: pathlib.Path,
    work: pathlib.Path,
    pid_dir: pathlib.Path,
    address: str,
    instance: str,
    properties: dict[str, str],
    count: int,
) -> list[Worker]:
    """`count` workers, each in `work/workers/w<n>` with an environment of PATH alone; returns once
    each has opened its bot session."""
    started: list[Worker] = []
    for index in range(1, count + 1):
        directory = work / "workers" / f"w{index}"
        directory.mkdir(parents=True, exist_ok=True)
        argv = [str(venv / "bin" / "python"), str(WORKER), "--server", address, "--instance", instance]
        argv += ["--dir", str(directory)] + [f"--property={k}={v}" for k, v in sorted(properties.items())]
        env = {"PATH": "/usr/bin:/bin"}
        server = servers.start(
            f"worker-w{index}", argv, env, 0, address, work, pid_dir, signal.SIGTERM, None, cwd=directory
        )
        started.append(Worker(server, directory))
    deadline = time.monotonic() + 60
    for worker in started:
        while "bot session" not in worker.server.log.read_text(errors="replace"):
            if worker.server.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"worker {worker.directory.name} did not open a bot session; see {worker.server.log}"
                )
            time.sleep(0.3)
    return started
