"""Float32 tensors by key, in memory and on disk, each bounded in bytes: the storage of the frozen
trunk's outputs (:mod:`workbench.lifecycle.finetune.trunk`).

Memory holds the most recently used tensors; disk holds one ``.npy`` file per key under
``<folder>/<namespace>/``, written atomically (a temporary file, then a rename), so concurrent
processes and interrupted runs never read half a file. When the files under ``folder`` pass
``disk_bytes``, the least recently used ones (by modification time, refreshed on every read) are
deleted down to 90% of it. A file that does not read back as a float32 matrix of the expected
width is reported with a warning naming it and treated as missing.
"""

from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from workbench.paths import cache_dir


class TensorStore:
    """Two-level store of (rows, width) float32 tensors.

    >>> import tempfile
    >>> store = TensorStore(TensorStore.Config(folder=tempfile.mkdtemp(), memory_bytes=64), "demo", width=4)
    >>> store.put("a", torch.ones(2, 4)); store.put("b", torch.zeros(3, 4))  # 32 + 48 bytes: "a" leaves memory
    >>> store.get("a").shape, store.stats["disk_hits"], store.get("missing")
    (torch.Size([2, 4]), 1, None)
    """

    @dataclass
    class Config:
        """Bounds and place.

        Attributes:
            memory_bytes: tensors kept in memory (least recently used dropped first).
            disk_bytes: bytes of files under ``folder`` (all namespaces) before eviction; 0: memory only.
            folder: where the files go (default ``<cache>/trunk``).
        """

        memory_bytes: int = 1 << 30
        # an epoch of the default recipe (7,500 rows): about 1.5 GB of cross-entropy rows (206 KB each,
        # measured) and 2.5 GB of grid-objective rows (328 KB), which must survive from one arm to the next
        disk_bytes: int = 8 << 30
        folder: str | None = None

    def __init__(self, config: Config, namespace: str, width: int):
        self.config, self.width = config, width
        self.root = Path(config.folder) if config.folder else cache_dir() / "trunk"
        self.folder = self.root / namespace
        self._memory: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._memory_bytes = 0
        self._disk_bytes: int | None = None  # counted on the first write
        self.stats = {"memory_hits": 0, "disk_hits": 0, "misses": 0}

    def get(self, key: str) -> torch.Tensor | None:
        """The tensor stored under ``key``, or None."""
        if key in self._memory:
            self._memory.move_to_end(key)
            self.stats["memory_hits"] += 1
            return self._memory[key]
        tensor = self._read(self._path(key)) if self.config.disk_bytes else None
        if tensor is None:
            self.stats["misses"] += 1
            return None
        self.stats["disk_hits"] += 1
        self._remember(key, tensor)
        return tensor

    def put(self, key: str, tensor: torch.Tensor) -> None:
        """Store a (rows, width) tensor (kept as float32 on the CPU)."""
        tensor = tensor.detach().to("cpu", torch.float32).contiguous()
        self._remember(key, tensor)
        if self.config.disk_bytes:
            self._write(self._path(key), tensor)

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.npy"

    def _remember(self, key: str, tensor: torch.Tensor) -> None:
        self._memory[key] = tensor
        self._memory_bytes += tensor.numel() * 4
        while self._memory_bytes > self.config.memory_bytes and len(self._memory) > 1:
            _, dropped = self._memory.popitem(last=False)
            self._memory_bytes -= dropped.numel() * 4

    def _read(self, path: Path) -> torch.Tensor | None:
        try:
            array = np.load(path)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError) as error:  # a damaged or truncated file
            warnings.warn(f"trunk cache file {path} is unreadable ({error}); recomputing it", stacklevel=3)
            return None
        if array.dtype != np.float32 or array.ndim != 2 or array.shape[1] != self.width:
            warnings.warn(
                f"trunk cache file {path} holds {array.dtype} {array.shape}, not float32 (rows, {self.width}); "
                "recomputing it",
                stacklevel=3,
            )
            return None
        os.utime(path)  # recently used: evicted last
        return torch.from_numpy(array)

    def _write(self, path: Path, tensor: torch.Tensor) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "wb") as handle:
            np.save(handle, tensor.numpy())
        os.replace(tmp, path)
        if self._disk_bytes is None:
            self._disk_bytes = sum(f.stat().st_size for f in self.root.rglob("*.npy"))
        else:
            self._disk_bytes += path.stat().st_size
        if self._disk_bytes > self.config.disk_bytes:
            self._evict()

    def _evict(self) -> None:
        """Delete the least recently used files under the root down to 90% of ``disk_bytes``."""
        files = []
        for path in self.root.rglob("*.npy"):
            try:
                stat = path.stat()
            except FileNotFoundError:  # another process evicted it
                continue
            files.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in files)
        for _, size, path in sorted(files):
            if total <= 0.9 * self.config.disk_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size
        self._disk_bytes = total
