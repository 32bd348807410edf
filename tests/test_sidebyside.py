"""The benchmark scripts' side-by-side timings: order, record fields and refusals."""

import pytest

from workbench.sidebyside import SideBySide


def test_record_keeps_every_repeat_and_the_fields_benchmarks_write():
    timings = SideBySide(("off", "cold", "warm"))
    for repeat, seconds in enumerate(((8.0, 9.0, 2.0), (6.0, 7.0, 4.0), (10.0, 8.0, 3.0))):
        assert timings.order(repeat)[-1 if repeat % 2 else 0] == "off"
        for way, value in zip(("off", "cold", "warm"), seconds):
            timings.add(way, value)
    record = timings.record()
    assert record["all_seconds"] == {"off": [8.0, 6.0, 10.0], "cold": [9.0, 7.0, 8.0], "warm": [2.0, 4.0, 3.0]}
    assert record["seconds"] == {"off": 8.0, "cold": 8.0, "warm": 3.0}
    assert record["ratio_off_over_cold"] == 1.0 and record["ratio_off_over_warm"] == pytest.approx(8 / 3)
    assert len(record["load_average_before"]) == 3 and len(record["load_average_after"]) == 3


def test_timed_block_counts_as_one_repeat(capsys):
    timings = SideBySide(("a", "b"))
    with timings.timed("b", "repeat 0 "):
        pass
    assert len(timings.seconds["b"]) == 1 and timings.seconds["a"] == []
    assert capsys.readouterr().out.startswith("  repeat 0 b: ")


def test_refuses_one_way_and_unknown_ways():
    with pytest.raises(ValueError, match="two ways"):
        SideBySide(("only",))
    with pytest.raises(KeyError, match="unknown way 'c'"):
        SideBySide(("a", "b")).add("c", 1.0)
