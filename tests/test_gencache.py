import json

from workbench.inference.gencache import GenerationCache

FP = {"name": "m", "dtype": "fp32", "quantization": None, "weights_sha256": "abc"}


def test_roundtrip_and_key_sensitivity(tmp_path):
    cache = GenerationCache(tmp_path, FP)
    key = cache.key("sample", "p", {"t": 1.0}, seed=0)
    assert key != cache.key("sample", "p", {"t": 1.0}, seed=1)
    assert key != cache.key("sample", "p", {"t": 0.5}, seed=0)
    assert key != GenerationCache(tmp_path, {**FP, "dtype": "bf16"}).key("sample", "p", {"t": 1.0}, seed=0)
    cache.put_many("sample", {key: {"texts": ["a"]}})
    assert GenerationCache(tmp_path, FP).get("sample", key) == {"texts": ["a"]}
    assert len(GenerationCache(tmp_path, FP)) == 1


def test_corrupted_and_partial_lines_are_skipped(tmp_path):
    cache = GenerationCache(tmp_path, FP)
    keys = [cache.key("score", f"p{i}", {}) for i in range(3)]
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
    assert GenerationCache(tmp_path, FP).get("score", keys[2]) == {"v": 2}
