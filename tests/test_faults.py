"""A full disk while a generation-cache line or a fine-tuning checkpoint is written (issue 22): a
clear error naming the file, and what was written before stays readable.

The full disk is simulated: the write puts half of its bytes on disk, then fails with ENOSPC, as a
file system that runs out of space mid-write does.
"""

import errno
import io
import os

import pytest
import torch

from workbench.inference import gencache
from workbench.inference.gencache import GenerationCache
from workbench.lifecycle.finetune.checkpoints import latest_checkpoint, load_latest_checkpoint, save_checkpoint

FINGERPRINT = {"name": "demo", "weights_sha256": "0"}


def disk_full() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class FillsUp:
    """A file opened for appending whose ``write`` stores half the bytes, then fails with ENOSPC."""

    def __init__(self, handle):
        self.handle = handle

    def write(self, data: bytes) -> int:
        self.handle.write(data[: len(data) // 2])
        self.handle.flush()
        raise disk_full()

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.handle.close()


def test_a_full_disk_while_appending_to_the_cache_names_the_file_and_keeps_the_entries(tmp_path, monkeypatch):
    cache = GenerationCache(tmp_path, FINGERPRINT)
    kept = {cache.key("sample", f"prompt {i}", {}, device="cpu"): {"texts": [str(i)]} for i in range(3)}
    cache.put_many("sample", kept)
    path = cache.folder / "sample.jsonl"
    size = path.stat().st_size

    def open_on_a_full_disk(file, mode="r", *args, **kwargs):
        handle = open(file, mode, *args, **kwargs)  # noqa: SIM115 (the caller closes it)
        return FillsUp(handle) if "a" in mode else handle

    monkeypatch.setattr(gencache, "open", open_on_a_full_disk, raising=False)
    lost = {cache.key("sample", "prompt 9", {}, device="cpu"): {"texts": ["a long answer " * 50]}}
    with pytest.raises(OSError, match=f"generation cache {path} .No space left on device.") as raised:
        cache.put_many("sample", lost)
    assert raised.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert path.stat().st_size == size  # the half line was cut off
    reread = GenerationCache(tmp_path, FINGERPRINT)
    assert all(reread.get("sample", key) == value for key, value in kept.items())
    assert reread.get("sample", next(iter(lost))) is None and reread.skipped_lines == 0
    reread.put_many("sample", lost)  # space again: the next write lands whole
    assert GenerationCache(tmp_path, FINGERPRINT).get("sample", next(iter(lost))) == next(iter(lost.values()))


def test_a_full_disk_while_writing_a_checkpoint_names_it_and_keeps_the_previous_one(tmp_path, monkeypatch):
    state = {"step": 2, "weights": torch.arange(6.0)}
    save_checkpoint(tmp_path, state)
    real_save = torch.save

    def save_on_a_full_disk(obj, target, *args, **kwargs):
        buffer = io.BytesIO()
        real_save(obj, buffer)
        with open(target, "wb") as handle:
            handle.write(buffer.getvalue()[: buffer.tell() // 2])
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0")  # torch's wording

    monkeypatch.setattr(torch, "save", save_on_a_full_disk)
    with pytest.raises(
        OSError, match="could not write checkpoint .*step-000004.pt .*previous checkpoints .* are intact"
    ):
        save_checkpoint(tmp_path, {"step": 4, "weights": torch.zeros(1000)})
    monkeypatch.undo()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-000002.pt"]  # no partial file left
    path, loaded = load_latest_checkpoint(tmp_path)
    assert path == latest_checkpoint(tmp_path) and loaded["step"] == 2
    assert torch.equal(loaded["weights"], state["weights"])
