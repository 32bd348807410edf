"""A disk cache of generations, so that a rerun costs nothing and an interrupted run resumes.

Entries live in append-only JSON-lines files, one file per model fingerprint and kind of call
(``sample`` or ``score``). Every line carries a checksum of its own content. Reading skips, with a
warning, any line that does not parse or whose checksum does not match: that is what a run killed
in the middle of a write, or a file edited by hand, leaves behind. Nothing else is lost.

Keys are SHA-256 hashes of everything that determines the output: the model fingerprint, the
prompt, the decoding settings and the seed.

>>> import tempfile
>>> cache = GenerationCache(tempfile.mkdtemp(), {"name": "demo", "weights_sha256": "0"})
>>> key = cache.key("sample", "Rate: great film", {"temperature": 1.0}, seed=0)
>>> cache.get("sample", key) is None
True
>>> cache.put_many("sample", {key: {"texts": ["5"]}})
>>> GenerationCache(cache.root, cache.fingerprint).get("sample", key)
{'texts': ['5']}
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class GenerationCache:
    """Append-only, checksummed cache of decoding results for one model fingerprint.

    Args:
        root: the cache folder (one sub-folder per fingerprint is created inside).
        fingerprint: the model fingerprint (see :class:`workbench.inference.models.LoadedModel`).
    """

    def __init__(self, root: str | Path, fingerprint: dict):
        self.root = Path(root)
        self.fingerprint = dict(fingerprint)
        self.folder = self.root / _digest(self.fingerprint)[:16]
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "fingerprint.json").write_text(json.dumps(self.fingerprint, indent=1))
        self._entries: dict[str, dict[str, dict]] = {}
        self.skipped_lines = 0

    def key(self, kind: str, prompt: str, settings: dict, seed: int | None = None) -> str:
        """The cache key of one prompt under the given settings."""
        return _digest({"fp": self.fingerprint, "kind": kind, "prompt": prompt, "settings": settings, "seed": seed})

    def _path(self, kind: str) -> Path:
        return self.folder / f"{kind}.jsonl"

    def _load(self, kind: str) -> dict[str, dict]:
        if kind in self._entries:
            return self._entries[kind]
        entries: dict[str, dict] = {}
        path = self._path(kind)
        if path.exists():
            with open(path, encoding="utf-8", errors="replace") as handle:
                for number, line in enumerate(handle, start=1):
                    record = self._parse(line)
                    if record is None:
                        self.skipped_lines += 1
                        log.warning("%s line %d: corrupted or partial cache entry skipped", path, number)
                        continue
                    entries[record["key"]] = record["value"]
        self._entries[kind] = entries
        return entries

    @staticmethod
    def _parse(line: str) -> dict | None:
        if not line.endswith("\n"):
            return None  # the writer was interrupted before finishing this line
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            return None
        if not isinstance(record, dict) or {"key", "value", "check"} - record.keys():
            return None
        if record["check"] != _digest([record["key"], record["value"]])[:16]:
            return None
        return record

    def get(self, kind: str, key: str) -> dict | None:
        """The cached value for ``key``, or None."""
        return self._load(kind).get(key)

    def put_many(self, kind: str, values: dict[str, dict]) -> None:
        """Append entries and make them durable before returning."""
        if not values:
            return
        entries = self._load(kind)
        path = self._path(kind)
        # A run killed mid-line leaves no trailing newline: start on a fresh line so the next
        # entry is not glued onto the broken one.
        needs_newline = path.exists() and path.stat().st_size > 0 and not _ends_with_newline(path)
        with open(path, "a", encoding="utf-8") as handle:
            if needs_newline:
                handle.write("\n")
            for key, value in values.items():
                line = {"key": key, "value": value, "check": _digest([key, value])[:16]}
                handle.write(json.dumps(line, ensure_ascii=False) + "\n")
                entries[key] = json.loads(json.dumps(value))
            handle.flush()
            os.fsync(handle.fileno())

    def __len__(self) -> int:
        return sum(len(self._load(path.stem)) for path in self.folder.glob("*.jsonl"))


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"
