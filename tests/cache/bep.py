"""Finds the output files of the top-level targets in Bazel's `--build_event_json_file`.

The build event protocol names each built target's default outputs through `namedSetOfFiles`
events (which may nest). Reading them avoids `cquery --output=files` (absent from Bazel 4.2.3) and
guessing `bazel-bin` paths, and it works for whatever the rules declare as a package's outputs.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import urllib.parse


def _file_path(uri: str) -> pathlib.Path:
    """Local path of a `file://` URI. With a remote cache, Bazel announces files by their
    `bytestream://` CAS address unless `--experimental_build_event_upload_strategy=local`."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme != "file":
        raise ValueError(
            f"build event names {uri}, not a local file "
            "(run Bazel with --experimental_build_event_upload_strategy=local)"
        )
    return pathlib.Path(urllib.parse.unquote(parsed.path))


def top_level_outputs(bep_json: pathlib.Path) -> dict[str, dict[str, pathlib.Path]]:
    """Maps each successfully built top-level label to {short output name: local path}."""
    sets: dict[str, dict] = {}
    targets: dict[str, list[str]] = {}
    for line in bep_json.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        event = json.loads(line)
        event_id = event.get("id", {})
        if "namedSet" in event_id and "namedSetOfFiles" in event:
            sets[event_id["namedSet"]["id"]] = event["namedSetOfFiles"]
        elif "targetCompleted" in event_id and event.get("completed", {}).get("success"):
            groups = event["completed"].get("outputGroup", [])
            targets[event_id["targetCompleted"]["label"]] = [
                s["id"] for g in groups if g.get("name") == "default" for s in g.get("fileSets", [])
            ]

    def files_of(set_ids: list[str], seen: set[str]) -> dict[str, pathlib.Path]:
        found: dict[str, pathlib.Path] = {}
        for set_id in set_ids:
            if set_id in seen or set_id not in sets:
                continue
            seen.add(set_id)
            named = sets[set_id]
            for f in named.get("files", []):
                found[f["name"]] = _file_path(f["uri"])
            found.update(files_of([s["id"] for s in named.get("fileSets", [])], seen))
        return found

    return {label: files_of(ids, set()) for label, ids in targets.items()}


def sha256_file(path: pathlib.Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks (packages can be large)."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def output_digests(bep_json: pathlib.Path) -> dict[str, str]:
    """{`label output-name`: sha256} of every default output of every top-level target built."""
    return {
        f"{label} {name}": sha256_file(path)
        for label, files in top_level_outputs(bep_json).items()
        for name, path in sorted(files.items())
    }
