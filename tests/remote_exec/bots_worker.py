"""A minimal REAPI bots worker: test infrastructure for the remote-execution checks, not a product.

BuildGrid's PyPI wheels ship no worker and buildbox is not packaged, so the checks in
tests/remote_exec/ need their own. This one speaks the Remote Workers API (Bots service) with the
protos inside the `buildgrid` wheel and runs under BuildGrid's venv. One lease at a time:

1. fetch the Action, its Command and the whole input tree from CAS into `<dir>/exec/<n>` (blobs
   kept in `<dir>/cas`, hard-linked into each action's tree, so the pip hub's files, an input of
   every Ota* action, are fetched once per worker, not once per action);
2. run the command there with exactly the Command's environment (nothing of the worker's own), as
   `nobody` when the worker runs as root, so an action cannot read the client's checkout or output
   base (the checks keep those 0700);
3. upload stdout, stderr and the declared outputs, and complete the lease with the ActionResult
   (BuildGrid writes it to the action cache).

The worker advertises `--property KEY=VALUE` pairs on its primary device; BuildGrid gives it only
jobs whose platform properties it matches (the toolchain identity, docs/ci-and-remote-cache.md).
Each action's timings go to `<dir>/actions.jsonl` for the checks and the bench. Production engines
use buildbox-worker, Buildbarn's bb_worker, BuildBuddy's or NativeLink's executors instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
import uuid

import grpc
from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2 as reapi
from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2_grpc as reapi_grpc
from buildgrid._protos.google.bytestream import bytestream_pb2, bytestream_pb2_grpc
from buildgrid._protos.google.devtools.remoteworkers.v1test2 import bots_pb2, bots_pb2_grpc, worker_pb2
from buildgrid._protos.google.rpc import code_pb2

_BATCH_BYTES = 2 << 20  # below gRPC's 4 MiB message limit, with room for the request's framing
_CHUNK = 1 << 20
_POLL_SECONDS = 30  # BuildGrid long-polls for up to 80 % of the call's deadline
_NOBODY = 65534
_SETPRIV = "/usr/bin/setpriv"  # util-linux, in every Debian
# A server under load sheds calls (BuildGrid answers RESOURCE_EXHAUSTED above its concurrent-RPC
# limit): retried with backoff, so that a busy engine delays an action instead of losing a lease.
_TRANSIENT = (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE)
_ATTEMPTS = 12


def retried(call, *args, **kwargs):
    """`call(*args, **kwargs)`, again after 0.2, 0.4 … 5 s while it fails with a transient status."""
    for attempt in range(_ATTEMPTS):
        try:
            return call(*args, **kwargs)
        except grpc.RpcError as error:
            if error.code() not in _TRANSIENT or attempt == _ATTEMPTS - 1:
                raise
            time.sleep(min(0.2 * 2**attempt, 5.0))
    raise AssertionError("unreachable")


@dataclasses.dataclass
class Cas:
    """CAS and ByteStream of one instance, with a local blob store in front of reads."""

    channel: grpc.Channel
    instance: str
    store: pathlib.Path

    def __post_init__(self) -> None:
        self.cas = reapi_grpc.ContentAddressableStorageStub(self.channel)
        self.bytestream = bytestream_pb2_grpc.ByteStreamStub(self.channel)
        self.store.mkdir(parents=True, exist_ok=True)

    def _resource(self, digest: reapi.Digest, upload: bool) -> str:
        prefix = f"{self.instance}/" if self.instance else ""
        middle = f"uploads/{uuid.uuid4()}/" if upload else ""
        return f"{prefix}{middle}blobs/{digest.hash}/{digest.size_bytes}"

    def path(self, digest: reapi.Digest) -> pathlib.Path:
        return self.store / digest.hash

    def fetch(self, digests: list[reapi.Digest]) -> None:
        """Makes every blob of `digests` present in the local store (read-only files)."""
        wanted = {d.hash: d for d in digests if not self.path(d).exists()}
        small = [d for d in wanted.values() if d.size_bytes <= _BATCH_BYTES]
        for digest in (d for d in wanted.values() if d.size_bytes > _BATCH_BYTES):
            request = bytestream_pb2.ReadRequest(resource_name=self._resource(digest, upload=False))
            self._store(digest, retried(lambda r=request: b"".join(c.data for c in self.bytestream.Read(r))))
        batch: list[reapi.Digest] = []
        size = 0
        for digest in small + [None]:
            if digest is None or size + digest.size_bytes > _BATCH_BYTES:
                if batch:
                    reply = retried(
                        self.cas.BatchReadBlobs, reapi.BatchReadBlobsRequest(instance_name=self.instance, digests=batch)
                    )
                    for response in reply.responses:
                        if response.status.code != code_pb2.OK:
                            raise RuntimeError(f"CAS read of {response.digest.hash}: {response.status.message}")
                        self._store(response.digest, response.data)
                batch, size = [], 0
            if digest is not None:
                batch.append(digest)
                size += digest.size_bytes

    def _store(self, digest: reapi.Digest, data: bytes) -> None:
        if hashlib.sha256(data).hexdigest() != digest.hash:
            raise RuntimeError(f"CAS returned other bytes for {digest.hash}")
        temporary = self.store / f".{digest.hash}.{uuid.uuid4().hex}"
        temporary.write_bytes(data)
        temporary.chmod(0o444)
        temporary.replace(self.path(digest))

    def read(self, digest: reapi.Digest) -> bytes:
        self.fetch([digest])
        return self.path(digest).read_bytes()

    def upload(self, blobs: dict[str, bytes | pathlib.Path]) -> None:
        """Uploads the blobs (by sha256) the server does not have yet."""
        digests = {h: reapi.Digest(hash=h, size_bytes=_size(b)) for h, b in blobs.items()}
        missing = retried(
            self.cas.FindMissingBlobs,
            reapi.FindMissingBlobsRequest(instance_name=self.instance, blob_digests=list(digests.values())),
        ).missing_blob_digests
        for digest in missing:
            blob = blobs[digest.hash]
            data = blob.read_bytes() if isinstance(blob, pathlib.Path) else blob
            if digest.size_bytes <= _BATCH_BYTES:
                request = reapi.BatchUpdateBlobsRequest(
                    instance_name=self.instance,
                    requests=[reapi.BatchUpdateBlobsRequest.Request(digest=digest, data=data)],
                )
                for response in retried(self.cas.BatchUpdateBlobs, request).responses:
                    if response.status.code != code_pb2.OK:
                        raise RuntimeError(f"CAS write of {digest.hash}: {response.status.message}")
                continue
            resource = self._resource(digest, upload=True)
            chunks = [
                bytestream_pb2.WriteRequest(
                    resource_name=resource,
                    write_offset=offset,
                    data=data[offset : offset + _CHUNK],
                    finish_write=offset + _CHUNK >= len(data),
                )
                for offset in range(0, max(len(data), 1), _CHUNK)
            ]
            retried(lambda c=chunks: self.bytestream.Write(iter(c)))


def _size(blob: bytes | pathlib.Path) -> int:
    return blob.stat().st_size if isinstance(blob, pathlib.Path) else len(blob)


def _sha256_file(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _message(cas: Cas, digest: reapi.Digest, message_type):
    message = message_type()
    message.ParseFromString(cas.read(digest))
    return message


def materialize(cas: Cas, root_digest: reapi.Digest, root: pathlib.Path) -> None:
    """Writes the input tree `root_digest` under `root`: directories level by level, files hard-linked
    from the local store (read-only; executables 0555)."""
    level = [(root_digest, root)]
    while level:
        cas.fetch([d for d, _ in level])
        files: list[tuple[reapi.FileNode, pathlib.Path]] = []
        next_level = []
        for digest, path in level:
            directory = _message(cas, digest, reapi.Directory)
            path.mkdir(parents=True, exist_ok=True)
            files += [(f, path / f.name) for f in directory.files]
            next_level += [(d.digest, path / d.name) for d in directory.directories]
            for link in directory.symlinks:
                (path / link.name).symlink_to(link.target)
        cas.fetch([f.digest for f, _ in files])
        for node, path in files:
            source = cas.path(node.digest)
            if node.is_executable:
                executable = source.with_name(source.name + ".x")
                if not executable.exists():
                    shutil.copyfile(source, executable)
                    executable.chmod(0o555)
                source = executable
            os.link(source, path)
        level = next_level


def _tree(directory: pathlib.Path, blobs: dict[str, bytes | pathlib.Path]) -> reapi.Directory:
    """The Directory message of `directory`; registers every file and subdirectory blob in `blobs`."""
    message = reapi.Directory()
    for entry in sorted(directory.iterdir(), key=lambda p: p.name):
        if entry.is_symlink():
            message.symlinks.add(name=entry.name, target=os.readlink(entry))
        elif entry.is_dir():
            child = _tree(entry, blobs)
            data = child.SerializeToString(deterministic=True)
            digest = hashlib.sha256(data).hexdigest()
            blobs[digest] = data
            message.directories.add(name=entry.name, digest=reapi.Digest(hash=digest, size_bytes=len(data)))
        else:
            digest = _sha256_file(entry)
            blobs[digest] = entry
            message.files.add(
                name=entry.name,
                digest=reapi.Digest(hash=digest, size_bytes=entry.stat().st_size),
                is_executable=os.access(entry, os.X_OK),
            )
    return message


def _output_tree(directory: pathlib.Path, blobs: dict[str, bytes | pathlib.Path]) -> reapi.Tree:
    """A Tree message (root plus every descendant Directory) for an output directory."""
    tree = reapi.Tree()
    pending = [directory]
    messages: list[reapi.Directory] = []
    while pending:
        current = pending.pop(0)
        messages.append(_tree(current, blobs))
        pending += sorted((p for p in current.iterdir() if p.is_dir() and not p.is_symlink()), key=lambda p: p.name)
    tree.root.CopyFrom(messages[0])
    tree.children.extend(messages[1:])
    return tree


@dataclasses.dataclass
class Worker:
    """One bot: a session with BuildGrid, a directory of its own, one lease at a time."""

    server: str
    instance: str
    directory: pathlib.Path
    properties: list[tuple[str, str]]

    def __post_init__(self) -> None:
        self.channel = grpc.insecure_channel(
            self.server,
            options=[("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)],
        )
        self.bots = bots_pb2_grpc.BotsStub(self.channel)
        self.cas = Cas(self.channel, self.instance, self.directory / "cas")
        self.executions = 0
        self.log = (self.directory / "actions.jsonl").open("a", buffering=1)

    def session(self) -> bots_pb2.BotSession:
        device = worker_pb2.Device(
            handle=self.directory.name,
            properties=[worker_pb2.Device.Property(key=k, value=v) for k, v in self.properties],
        )
        request = bots_pb2.CreateBotSessionRequest(
            parent=self.instance,
            bot_session=bots_pb2.BotSession(
                bot_id=f"rules-ota-test-{self.directory.name}-{os.getpid()}",
                status=bots_pb2.BotStatus.OK,
                worker=worker_pb2.Worker(devices=[device]),
            ),
        )
        return retried(self.bots.CreateBotSession, request, timeout=_POLL_SECONDS)

    def serve(self) -> None:
        session = self.session()
        print(f"bot session {session.name}", flush=True)
        while True:
            for lease in session.leases:
                if lease.state in (bots_pb2.LeaseState.PENDING, bots_pb2.LeaseState.ACTIVE):
                    self.run_lease(lease)
            try:  # the session goes back with its completed leases until the server has taken it
                session = retried(
                    self.bots.UpdateBotSession,
                    bots_pb2.UpdateBotSessionRequest(name=session.name, bot_session=session),
                    timeout=_POLL_SECONDS,
                )
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise

    def run_lease(self, lease: bots_pb2.Lease) -> None:
        """Runs the lease's action and marks the lease completed, with its result or an error."""
        try:
            result = self.execute(lease)
            lease.result.Pack(result)
            lease.status.code = code_pb2.OK
        except Exception as error:  # noqa: BLE001 - reported to BuildGrid (and so to Bazel) as the lease's status
            lease.status.code = code_pb2.INTERNAL
            lease.status.message = f"rules_ota test worker: {type(error).__name__}: {error}"
            print(lease.status.message, file=sys.stderr, flush=True)
        lease.state = bots_pb2.LeaseState.COMPLETED

    def execute(self, lease: bots_pb2.Lease) -> reapi.ActionResult:
        metadata = reapi.ExecutedActionMetadata(worker=self.directory.name)
        metadata.worker_start_timestamp.GetCurrentTime()
        if lease.payload.Is(reapi.Action.DESCRIPTOR):
            action = reapi.Action()
            lease.payload.Unpack(action)
        else:
            digest = reapi.Digest()
            lease.payload.Unpack(digest)
            action = _message(self.cas, digest, reapi.Action)
        command = _message(self.cas, action.command_digest, reapi.Command)
        self.executions += 1
        exec_root = self.directory / "exec" / str(self.executions)
        shutil.rmtree(exec_root, ignore_errors=True)
        timings: dict[str, float] = {}
        try:
            metadata.input_fetch_start_timestamp.GetCurrentTime()
            started = time.monotonic()
            materialize(self.cas, action.input_root_digest, exec_root)
            outputs = list(command.output_paths) or list(command.output_files) + list(command.output_directories)
            workdir = exec_root / command.working_directory
            for output in outputs:
                (workdir / output).parent.mkdir(parents=True, exist_ok=True)
            self._hand_over(exec_root)
            timings["fetch_s"] = time.monotonic() - started
            metadata.input_fetch_completed_timestamp.GetCurrentTime()

            metadata.execution_start_timestamp.GetCurrentTime()
            started = time.monotonic()
            exit_code, stdout, stderr = self._run(command, workdir, action.timeout.seconds or None)
            timings["exec_s"] = time.monotonic() - started
            metadata.execution_completed_timestamp.GetCurrentTime()

            metadata.output_upload_start_timestamp.GetCurrentTime()
            started = time.monotonic()
            result = self._collect(workdir, outputs, exit_code, stdout, stderr)
            timings["upload_s"] = time.monotonic() - started
            metadata.output_upload_completed_timestamp.GetCurrentTime()
        finally:
            shutil.rmtree(exec_root, ignore_errors=True)
        metadata.worker_completed_timestamp.GetCurrentTime()
        result.execution_metadata.CopyFrom(metadata)
        record = {"outputs": outputs, "exit_code": exit_code, "argv0": command.arguments[0], **timings}
        self.log.write(json.dumps(record, sort_keys=True) + "\n")
        return result

    @staticmethod
    def _hand_over(exec_root: pathlib.Path) -> None:
        """As root, gives the action's directories to `nobody` (inputs stay read-only files of root)."""
        if os.geteuid() != 0:
            return
        for directory, _, _ in os.walk(exec_root):
            os.chown(directory, _NOBODY, _NOBODY)

    @staticmethod
    def _run(command: reapi.Command, workdir: pathlib.Path, timeout: int | None) -> tuple[int, bytes, bytes]:
        env = {v.name: v.value for v in command.environment_variables}
        # setpriv, not Popen(user=...): with user= Python forks, and a fork of this process runs
        # gRPC's fork handlers, which now and then abort the child (SIGABRT before the exec). Without
        # it Python uses vfork, which runs no handlers.
        as_nobody = [_SETPRIV, f"--reuid={_NOBODY}", f"--regid={_NOBODY}", "--clear-groups", "--"]
        try:
            done = subprocess.run(
                (as_nobody if os.geteuid() == 0 else []) + list(command.arguments),
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except FileNotFoundError as error:
            return 127, b"", f"rules_ota test worker: {error}\n".encode()
        except subprocess.TimeoutExpired as error:
            return 124, error.stdout or b"", (error.stderr or b"") + b"rules_ota test worker: timed out\n"
        return done.returncode, done.stdout, done.stderr

    def _collect(
        self, workdir: pathlib.Path, outputs: list[str], exit_code: int, stdout: bytes, stderr: bytes
    ) -> reapi.ActionResult:
        blobs: dict[str, bytes | pathlib.Path] = {}
        result = reapi.ActionResult(exit_code=exit_code)
        for name, data in (("stdout", stdout), ("stderr", stderr)):
            digest = hashlib.sha256(data).hexdigest()
            blobs[digest] = data
            getattr(result, f"{name}_digest").CopyFrom(reapi.Digest(hash=digest, size_bytes=len(data)))
        for output in outputs:
            path = workdir / output
            if path.is_symlink() or not path.exists():
                continue  # Bazel reports a missing declared output as the action's failure
            if path.is_dir():
                tree = _output_tree(path, blobs)
                data = tree.SerializeToString(deterministic=True)
                digest = hashlib.sha256(data).hexdigest()
                blobs[digest] = data
                result.output_directories.add(path=output, tree_digest=reapi.Digest(hash=digest, size_bytes=len(data)))
            else:
                digest = _sha256_file(path)
                blobs[digest] = path
                result.output_files.add(
                    path=output,
                    digest=reapi.Digest(hash=digest, size_bytes=path.stat().st_size),
                    is_executable=os.access(path, os.X_OK),
                )
        self.cas.upload(blobs)
        return result


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", required=True, help="BuildGrid's address, host:port")
    parser.add_argument("--instance", default="", help="REAPI instance name")
    parser.add_argument("--dir", type=pathlib.Path, required=True, help="this worker's own directory")
    parser.add_argument("--property", action="append", default=[], help="KEY=VALUE platform property (repeatable)")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    properties = [tuple(p.split("=", 1)) for p in args.property]
    args.dir.mkdir(parents=True, exist_ok=True)
    Worker(args.server, args.instance, args.dir.resolve(), properties).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
