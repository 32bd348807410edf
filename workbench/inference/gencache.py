"""A disk cache of generations, so that a rerun costs nothing and an interrupted run resumes.

Entries live in append-only JSON-lines files, one file per model fingerprint and kind of call
(``sample`` or ``score``). Every line carries a checksum of its own content. Reading skips, with a
warning, any line that does not parse or whose checksum does not match: that is what a run killed
in the middle of a write, or a file edited by hand, leaves behind. Nothing else is lost.

Keys are SHA-256 hashes of everything that determines the output: the model fingerprint, the
prompt, the decoding settings, the seed and the device type (the same seed draws other samples,
and scores differ in the last bits, on another device). Settings are compared by value: a
temperature of ``1`` and ``1.0`` is the same key, and so are a tuple and a list.

Several processes may share one cache file (notebooks run side by side, HPO workers): a writer
holds an exclusive lock on the file while it appends, and a reader a shared lock while it reads,
so lines never interleave and a reader never sees half a line. The locks are POSIX advisory
locks (``fcntl.flock``: Linux and macOS, local file systems and NFS with lock support); where
``fcntl`` is missing (Windows) the cache still works but only one process should write at a time.
A process also reads what others appended since it last looked before it reports a miss.

Audit: with ``WORKBENCH_DECODE_LOG=path`` set, every lookup and every entry written appends a line
``{"event": "hit" | "miss" | "computed", "label", "fp", "kind", "prompt", "settings", "seed", "device"}``
to that file (the prompt as a SHA-256 prefix; ``label`` is ``WORKBENCH_DECODE_LABEL``, which
``scripts/run_notebooks.py`` sets to the notebook's number), so that a job can count what each
notebook asked for and what was really computed, per (stage, kind, item, settings)
(:mod:`workbench.inference.decode_log`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import numbers
import os
from contextlib import contextmanager, nullcontext
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no POSIX advisory locks
    fcntl = None

log = logging.getLogger(__name__)
DECODE_LOG_ENV, DECODE_LABEL_ENV = "WORKBENCH_DECODE_LOG", "WORKBENCH_DECODE_LABEL"


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def canonical(value):
    """``value`` with numbers written by value, so that equal settings give equal keys.

    Integral floats become ints (``1.0`` -> ``1``, ``-0.0`` -> ``0``), numpy scalars Python
    numbers, tuples lists; ints stay exact (seeds beyond 2**53 are not rounded).

    >>> canonical({"temperature": 1.0, "top_p": 0.9, "stop": ("\\n",), "n": 8, "greedy": False})
    {'temperature': 1, 'top_p': 0.9, 'stop': ['\\n'], 'n': 8, 'greedy': False}
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return int(value) if value.is_integer() else value
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    raise TypeError(f"cache key part {value!r} ({type(value).__name__}) is not a number, string, list or dict")


def device_type(device) -> str:
    """ "cpu", "cuda", "mps", ... from a ``torch.device`` or a string such as "cuda:1"."""
    return str(getattr(device, "type", device)).split(":")[0]


@contextmanager
def _locked(handle, exclusive: bool):
    """Hold a POSIX advisory lock on an open file (no-op where fcntl is missing)."""
    if fcntl is None:
        yield
        return
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
    try:
        yield
    finally:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


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
        # Written whole and renamed into place: a concurrent process never sees it half written.
        temporary = self.folder / f".fingerprint.{os.getpid()}.tmp"
        temporary.write_text(json.dumps(self.fingerprint, indent=1))
        os.replace(temporary, self.folder / "fingerprint.json")
        self._entries: dict[str, dict[str, dict]] = {}
        self._offsets: dict[str, int] = {}  # bytes of each file already read
        self._lines: dict[str, int] = {}  # lines of each file already read (for warnings)
        self.skipped_lines = 0
        self._audit = os.environ.get(DECODE_LOG_ENV)
        self._key_parts: dict[str, dict] = {}  # key -> what it hashes, kept only while auditing

    def key(self, kind: str, prompt: str, settings: dict, seed: int | None = None, *, device) -> str:
        """The cache key of one prompt under the given settings, on a device ("cpu", "cuda:0", a torch.device)."""
        parts = {
            "fp": self.fingerprint,
            "kind": kind,
            "prompt": prompt,
            "settings": canonical(settings),
            "seed": canonical(seed),
            "device": device_type(device),
        }
        key = _digest(parts)
        if self._audit:
            self._key_parts[key] = {
                **parts,
                "fp": self.folder.name,
                "prompt": hashlib.sha256(prompt.encode()).hexdigest()[:16],
            }
        return key

    def _path(self, kind: str) -> Path:
        return self.folder / f"{kind}.jsonl"

    def _load(self, kind: str) -> dict[str, dict]:
        if kind not in self._entries:
            self._refresh(kind)
        return self._entries[kind]

    def _refresh(self, kind: str, locked: bool = False) -> None:
        """Read what was appended to ``kind``'s file since the last read (``locked``: we hold the write lock)."""
        entries = self._entries.setdefault(kind, {})
        path = self._path(kind)
        size = path.stat().st_size if path.exists() else 0
        offset = self._offsets.get(kind, 0)
        if size == offset:
            return
        if size < offset:  # the file was deleted or replaced: start over
            entries.clear()
            offset = self._lines[kind] = 0
        with open(path, "rb") as handle, nullcontext() if locked else _locked(handle, exclusive=False):
            handle.seek(offset)
            data = handle.read()
        self._offsets[kind] = offset + len(data)
        # Under the lock no writer is mid-line, so a last line without a newline is a crashed
        # writer's: it is skipped, and the next writer starts on a fresh line.
        for line in data.decode("utf-8", errors="replace").splitlines(keepends=True):
            self._lines[kind] = self._lines.get(kind, 0) + 1
            if not line.strip():
                continue
            record = self._parse(line)
            if record is None:
                self.skipped_lines += 1
                log.warning("%s line %d: corrupted or partial cache entry skipped", path, self._lines[kind])
                continue
            entries[record["key"]] = record["value"]

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
        """The cached value for ``key``, or None (after reading what other processes appended)."""
        value = self._load(kind).get(key)
        if value is None:
            self._refresh(kind)
            value = self._entries[kind].get(key)
        if self._audit:
            self._log("miss" if value is None else "hit", [key])
        return value

    def put_many(self, kind: str, values: dict[str, dict]) -> None:
        """Append entries and make them durable before returning (safe with concurrent writers).

        Raises:
            OSError: the write failed (a full disk, say); the error names the file, which is cut
                back to its length before the write, so every entry written before stays readable.
        """
        if not values:
            return
        path = self._path(kind)
        lines = [
            json.dumps({"key": key, "value": value, "check": _digest([key, value])[:16]}, ensure_ascii=False) + "\n"
            for key, value in values.items()
        ]
        with open(path, "ab") as handle, _locked(handle, exclusive=True):
            self._refresh(kind, locked=True)  # take in other writers' entries first
            # A run killed mid-line leaves no trailing newline: start on a fresh line so the next
            # entry is not glued onto the broken one.
            length = os.fstat(handle.fileno()).st_size
            if length > 0 and not _ends_with_newline(path):
                lines.insert(0, "\n")
            try:
                handle.write("".join(lines).encode("utf-8"))
                handle.flush()
                os.fsync(handle.fileno())
            except OSError as error:
                _cut_back(handle, length)
                raise OSError(
                    error.errno,
                    f"could not append {len(values)} entries to the generation cache {path} "
                    f"({error.strerror or error}); the entries already there are intact",
                ) from error
            self._offsets[kind] = os.fstat(handle.fileno()).st_size
        self._lines[kind] = self._lines.get(kind, 0) + len(lines)
        entries = self._entries[kind]
        for key, value in values.items():
            entries[key] = json.loads(json.dumps(value))
        if self._audit:
            self._log("computed", list(values))

    def _log(self, event: str, keys: list[str]) -> None:
        """Append one audit line per key (see the module's docstring)."""
        label = os.environ.get(DECODE_LABEL_ENV)
        lines = [
            json.dumps({"event": event, "label": label, **self._key_parts.get(key, {"fp": self.folder.name})}) + "\n"
            for key in keys
        ]
        with open(self._audit, "a", encoding="utf-8") as handle, _locked(handle, exclusive=True):
            handle.write("".join(lines))

    def __len__(self) -> int:
        return sum(len(self._load(path.stem)) for path in self.folder.glob("*.jsonl"))


def _cut_back(handle, length: int) -> None:
    """Drop what a failed append left after ``length`` bytes (a half line), as far as the disk allows."""
    try:
        handle.truncate(length)  # an unbuffered cut: it also discards bytes the failed flush still held
    except OSError as error:  # then the half line stays, and readers skip it (it has no newline)
        log.warning("could not cut %s back to %d bytes after a failed write: %s", handle.name, length, error)


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"
