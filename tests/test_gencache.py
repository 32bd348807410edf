import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import workbench
from workbench.inference.gencache import GenerationCache

FP = {"name": "m", "dtype": "fp32", "quantization": None, "weights_sha256": "abc"}
fcntl = pytest.importorskip("fcntl")


def test_roundtrip_and_key_sensitivity(tmp_path):
    cache = GenerationCache(tmp_path, FP)
    key = cache.key("sample", "p", {"t": 1.0}, seed=0, device="cpu")
    assert key != cache.key("sample", "p", {"t": 1.0}, seed=1, device="cpu")
    assert key != cache.key("sample", "p", {"t": 0.5}, seed=0, device="cpu")
    assert key != GenerationCache(tmp_path, {**FP, "dtype": "bf16"}).key(
        "sample", "p", {"t": 1.0}, seed=0, device="cpu"
    )
    cache.put_many("sample", {key: {"texts": ["a"]}})
    assert GenerationCache(tmp_path, FP).get("sample", key) == {"texts": ["a"]}
    assert len(GenerationCache(tmp_path, FP)) == 1


def test_equal_settings_are_one_key_and_the_device_type_is_part_of_it(tmp_path):
    cache = GenerationCache(tmp_path, FP)

    def key(settings, seed=0, device="cpu"):
        return cache.key("sample", "p", settings, seed=seed, device=device)

    base = key({"temperature": 1.0, "top_p": 1.0, "stop": ("\n",), "n": 4})
    assert base == key({"temperature": 1, "top_p": 1, "stop": ["\n"], "n": 4.0})
    assert base == key({"temperature": np.float64(1.0), "top_p": np.float32(1.0), "stop": ("\n",), "n": np.int64(4)})
    assert base != key({"temperature": 1.0000001, "top_p": 1.0, "stop": ("\n",), "n": 4})
    assert key({"temperature": 0.0}) == key({"temperature": -0.0}) == key({"temperature": 0})
    assert key({}, seed=2**53 + 1) != key({}, seed=2**53)  # big seeds are not rounded through float
    assert key({}, device="cuda:0") == key({}, device="cuda:1") == key({}, device="cuda") != key({}, device="cpu")
    import torch

    assert key({}, device=torch.device("cpu")) == key({}) and key({}, device=torch.device("cuda", 0)) == key(
        {}, device="cuda"
    )
    with pytest.raises(TypeError):
        cache.key("sample", "p", {})  # no device: refused rather than shared across devices
    with pytest.raises(TypeError, match="not a number"):
        key({"temperature": object()})


def test_corrupted_and_partial_lines_are_skipped(tmp_path):
    cache = GenerationCache(tmp_path, FP)
    keys = [cache.key("score", f"p{i}", {}, device="cpu") for i in range(3)]
    cache.put_many("score", {keys[0]: {"v": 0}, keys[1]: {"v": 1}})
    path = cache.folder / "score.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    tampered = json.loads(lines[1])
    tampered["value"]["v"] = 99  # checksum no longer matches
    path.write_text(lines[0] + "garbage{\n" + json.dumps(tampered) + "\n" + '{"key": "' + keys[2][:10])  # partial write
    reread = GenerationCache(tmp_path, FP)
    assert reread.get("score", keys[0]) == {"v": 0}
    assert reread.get("score", keys[1]) is None
    assert reread.skipped_lines == 3
    # Appending after a partial line starts a fresh line, so the new entry survives.
    reread.put_many("score", {keys[2]: {"v": 2}})
    fresh = GenerationCache(tmp_path, FP)
    assert fresh.get("score", keys[2]) == {"v": 2} and fresh.skipped_lines == 3


def test_a_miss_reads_what_another_writer_appended(tmp_path):
    mine, theirs = GenerationCache(tmp_path, FP), GenerationCache(tmp_path, FP)
    keys = [mine.key("sample", f"p{i}", {}, device="cpu") for i in range(3)]
    mine.put_many("sample", {keys[0]: {"v": 0}})
    assert mine.get("sample", keys[1]) is None
    theirs.put_many("sample", {keys[1]: {"v": 1}})  # another process, in real life
    assert mine.get("sample", keys[1]) == {"v": 1}  # read, not recomputed
    mine.put_many("sample", {keys[2]: {"v": 2}})
    assert theirs.get("sample", keys[2]) == {"v": 2} and len(GenerationCache(tmp_path, FP)) == 3
    assert mine.skipped_lines == theirs.skipped_lines == 0


# ------------------------------------------------------------------ several processes, one file

CHILD = """
import json, random, sys, time
from pathlib import Path
from workbench.inference.gencache import GenerationCache
root, fp, role, worker, go = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], int(sys.argv[4]), Path(sys.argv[5])
print("ready", flush=True)
while not go.exists():
    time.sleep(0.001)
if role == "writer":
    cache, rng = GenerationCache(root, fp), random.Random(worker)
    for batch in range(BATCHES):
        values = {
            cache.key("sample", f"w{worker} b{batch} i{i}", {"t": 1.0}, device="cpu"): {
                "texts": ["x" * rng.randrange(300, 5000)],
                "w": worker,
            }
            for i in range(PER_BATCH)
        }
        cache.put_many("sample", values)
else:  # a reader: rereads the whole file until the writers are done and counts broken lines it saw
    stop, skipped, reads = go.with_name("stop"), 0, 0
    while not stop.exists() or reads == 0:
        cache = GenerationCache(root, fp)
        cache.get("sample", "missing")
        skipped, reads = skipped + cache.skipped_lines, reads + 1
    print(f"skipped {skipped} reads {reads}", flush=True)
"""


def start(tmp_path, role, worker, go, batches=6, per_batch=40):
    env = {**os.environ, "PYTHONPATH": str(Path(workbench.__file__).parent.parent)}
    script = CHILD.replace("BATCHES", str(batches)).replace("PER_BATCH", str(per_batch))
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path), json.dumps(FP), role, str(worker), str(go)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdout.readline().strip() == "ready"
    return child


def test_concurrent_writer_processes_lose_nothing_and_readers_see_no_half_lines(tmp_path):
    go = tmp_path / "go"
    writers = [start(tmp_path, "writer", w, go) for w in range(4)]
    reader = start(tmp_path, "reader", 0, go)
    go.touch()
    for writer in writers:
        assert writer.wait(timeout=120) == 0
    go.with_name("stop").touch()
    assert reader.wait(timeout=120) == 0
    assert reader.stdout.read().startswith("skipped 0 ")
    cache = GenerationCache(tmp_path, FP)
    assert len(cache) == 4 * 6 * 40 and cache.skipped_lines == 0
    assert cache.get("sample", cache.key("sample", "w3 b5 i39", {"t": 1}, device="cpu"))["w"] == 3
    assert len((cache.folder / "sample.jsonl").read_bytes().splitlines()) == 4 * 6 * 40


@pytest.mark.parametrize(
    ("held", "role"), [(fcntl.LOCK_SH, "writer"), (fcntl.LOCK_EX, "writer"), (fcntl.LOCK_EX, "reader")]
)
def test_writers_and_readers_take_the_file_lock(tmp_path, held, role):
    """A writer waits while anyone reads or writes; a reader waits while someone writes."""
    go = tmp_path / "go"
    cache = GenerationCache(tmp_path, FP)
    cache.put_many("sample", {cache.key("sample", "first", {}, device="cpu"): {"v": 0}})
    path = cache.folder / "sample.jsonl"
    size = path.stat().st_size
    with open(path, "rb") as handle:
        fcntl.flock(handle.fileno(), held)
        child = start(tmp_path, role, 0, go, batches=1, per_batch=5)
        go.touch()
        go.with_name("stop").touch()
        time.sleep(1.0)
        assert child.poll() is None and path.stat().st_size == size  # blocked on the lock
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    assert child.wait(timeout=60) == 0
    if role == "writer":
        assert len(GenerationCache(tmp_path, FP)) == 6
    else:
        assert child.stdout.read().startswith("skipped 0")
