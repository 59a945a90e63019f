"""Model bundle files: hashing, safety checks, reading config.json. Torch-free.

A bundle is a directory: config.json (plain data: plugin, label schema, model spec,
preprocessing, metrics, versions, file digests, content hash), model.safetensors and the
tokenizer's JSON/text files. Nothing in it is ever executed or unpickled: files that could
hold pickle data are refused by name and by content before anything is loaded, and a
bundle whose files or config do not match its content hash is refused.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from twinlens.contract.errors import BundleError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT = "twinlens-bundle"
FORMAT_VERSION = 1
# .onnx: exported graphs (protobuf, self-contained; engine/onnx_export.py), never pickle.
_SAFE_SUFFIXES = {".json", ".safetensors", ".txt", ".model", ".md", ".onnx"}
_PICKLE_SUFFIXES = {".pkl", ".pickle", ".pt", ".pth", ".bin", ".ckpt", ".joblib", ".npy", ".npz"}


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def content_hash(config: dict[str, Any]) -> str:
    """Hash of the config (minus this field) — which includes every file's digest."""
    body = {key: value for key, value in config.items() if key not in ("content_hash", "version")}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def bundle_files(root: Path) -> list[str]:
    """Every file but the root config.json (a nested bundle's config.json is listed, so the
    root's content hash covers it)."""
    return sorted(name for name in (str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if name != CONFIG_NAME)


def _looks_like_pickle(path: Path) -> bool:
    with path.open("rb") as handle:
        head = handle.read(4)
    is_pickle = len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5
    is_torch_zip = head == b"PK\x03\x04"  # torch.save's zip container wraps a pickle
    return is_pickle or is_torch_zip


def check_no_pickle(root: Path) -> None:
    for name in bundle_files(root):
        path = root / name
        if path.suffix in _PICKLE_SUFFIXES or _looks_like_pickle(path):
            raise BundleError(f"{root}: refusing bundle: {name} may contain pickle data (only safetensors and JSON are loaded)")
        if path.suffix not in _SAFE_SUFFIXES:
            raise BundleError(f"{root}: refusing bundle: unexpected file type {name}")


def read_bundle_config(path: str | Path) -> dict[str, Any]:
    """Read and fully verify a bundle's config; raise BundleError with the reason."""
    root = Path(path)
    config_path = root / CONFIG_NAME
    if not config_path.is_file():
        raise BundleError(f"{root}: not a model bundle (no {CONFIG_NAME})")
    check_no_pickle(root)
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{config_path}: not valid JSON: {exc}") from exc
    if config.get("format") != FORMAT:
        raise BundleError(f"{root}: not a {FORMAT} (format={config.get('format')!r})")
    verify_bundle(root, config)
    return config


def verify_bundle(root: Path, config: dict[str, Any]) -> None:
    listed = config.get("files", {})
    present = bundle_files(root)
    if sorted(listed) != present:
        extra = sorted(set(present) - set(listed))
        missing = sorted(set(listed) - set(present))
        raise BundleError(f"{root}: bundle files do not match its config (unexpected: {extra}, missing: {missing})")
    for name, digest in listed.items():
        if file_digest(root / name) != digest:
            raise BundleError(f"{root}: {name} fails its hash: the bundle was modified after it was saved")
    if config.get("content_hash") != content_hash(config) or config.get("version") != config["content_hash"][:12]:
        raise BundleError(f"{root}: {CONFIG_NAME} fails the content hash: the bundle was modified after it was saved")


def seal_config(root: Path, config: dict[str, Any]) -> dict[str, Any]:
    """Record every file's digest and the content hash, then write config.json."""
    config = dict(config, format=FORMAT, format_version=FORMAT_VERSION)
    config["files"] = {name: file_digest(root / name) for name in bundle_files(root)}
    config["content_hash"] = content_hash(config)
    config["version"] = config["content_hash"][:12]
    (root / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True))
    return config


def refuse_foreign_folder(out_dir: Path) -> None:
    """A bundle replaces its folder wholesale, so only an empty folder or an earlier
    bundle may stand there: never a folder of someone's other files."""
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / CONFIG_NAME).is_file():
        raise BundleError(f"{out_dir} exists and is not a model bundle; refusing to replace it")


@contextmanager
def staged_bundle_folder(out_dir: Path) -> Iterator[Path]:
    """A temporary sibling of `out_dir` to write a bundle into; it replaces `out_dir` only
    when the block finishes, and is removed if it fails: never half-written."""
    out_dir = Path(out_dir)
    refuse_foreign_folder(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        yield staging
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
