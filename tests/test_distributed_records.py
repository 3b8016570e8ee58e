"""Per-rank records files: the union is what is done, rank 0's merge is dataset-ordered, crash-safe and exact."""

from __future__ import annotations

import json

from camkit.evaluate.records import (
    RECORDS_NAME,
    LineCounter,
    RecordWriter,
    done_indices,
    iter_all_records,
    merge_shards,
    read_records,
    record_files,
    shard_path,
)


def _rec(i: int, **extra) -> dict:
    return {"i": i, "id": f"img{i}", "gt": i % 7, "v1": [0.5, 0.25], **extra}


def _two_rank_run(out, n: int = 10, batch: int = 3, world: int = 2) -> None:
    writers = [RecordWriter(shard_path(out, r)) for r in range(world)]
    for b, start in enumerate(range(0, n, batch)):
        writers[b % world].write([_rec(i) for i in range(start, min(start + batch, n))])
    for w in writers:
        w.close()


def test_merge_folds_the_shards_into_dataset_order_and_removes_them(tmp_path):
    _two_rank_run(tmp_path)
    assert [p.name for p in record_files(tmp_path)] == ["records.rank0.jsonl", "records.rank1.jsonl"]
    assert done_indices(tmp_path) == set(range(10))
    assert merge_shards(tmp_path) == 10
    assert [p.name for p in record_files(tmp_path)] == [RECORDS_NAME]
    lines = (tmp_path / RECORDS_NAME).read_bytes().split(b"\n")
    assert lines[-1] == b""
    # byte-for-byte what one process writes for the same records, in index order
    assert lines[:-1] == [json.dumps(_rec(i), separators=(",", ":")).encode() for i in range(10)]
    assert merge_shards(tmp_path) == 10  # nothing to fold: unchanged
    assert read_records(tmp_path / RECORDS_NAME).records == {i: _rec(i) for i in range(10)}


def test_resume_state_is_the_union_of_every_file_whatever_world_size_wrote_it(tmp_path):
    # A one-process run stopped after 4 records, then 3 ranks appended, one of them killed mid-write.
    with RecordWriter(tmp_path / RECORDS_NAME) as w:
        w.write([_rec(i) for i in range(4)])
    with RecordWriter(shard_path(tmp_path, 2)) as w:
        w.write([_rec(4), _rec(5)])
    with RecordWriter(shard_path(tmp_path, 0)) as w:
        w.write([_rec(8)])
    with open(shard_path(tmp_path, 1), "wb") as f:
        f.write(json.dumps(_rec(6)).encode() + b"\n" + b'{"i":7,"id":"img7","gt"')  # torn by kill -9
    assert [p.name for p in record_files(tmp_path)] == [
        RECORDS_NAME, "records.rank0.jsonl", "records.rank1.jsonl", "records.rank2.jsonl"]
    assert done_indices(tmp_path) == {0, 1, 2, 3, 4, 5, 6, 8}
    assert sorted(r["i"] for r in iter_all_records(tmp_path)) == [0, 1, 2, 3, 4, 5, 6, 8]
    counter = LineCounter(tmp_path)
    assert counter.count() == 8
    with RecordWriter(shard_path(tmp_path, 1)) as w:  # the resumed rank 1 cuts the torn line, appends 7 and 9
        w.write([_rec(7), _rec(9)])
    assert counter.count() == 10  # incremental: only the new bytes are read
    assert merge_shards(tmp_path) == 10
    assert [json.loads(x)["i"] for x in (tmp_path / RECORDS_NAME).read_bytes().split(b"\n")[:-1]] == list(range(10))


def test_a_record_in_two_files_is_kept_once_from_the_first(tmp_path):
    # A kill after the merged file replaced records.jsonl but before the shards were deleted.
    with RecordWriter(tmp_path / RECORDS_NAME) as w:
        w.write([_rec(0), _rec(1, note="merged")])
    with RecordWriter(shard_path(tmp_path, 1)) as w:
        w.write([_rec(1, note="shard"), _rec(2)])
    assert merge_shards(tmp_path) == 3
    recs = read_records(tmp_path / RECORDS_NAME)
    assert recs.duplicates == 0 and recs.records[1]["note"] == "merged" and sorted(recs.records) == [0, 1, 2]


def test_failure_records_and_other_key_orders_merge_too(tmp_path):
    with RecordWriter(shard_path(tmp_path, 0)) as w:
        w.write([{"i": 3, "id": "bad.jpg", "error": "bad.jpg is truncated"}])
    with open(shard_path(tmp_path, 1), "w") as f:  # not written by RecordWriter: "i" not first
        f.write('{"id": "x", "i": 1}\n')
    assert done_indices(tmp_path) == {1, 3}
    assert merge_shards(tmp_path) == 2
    assert [json.loads(x)["i"] for x in (tmp_path / RECORDS_NAME).read_bytes().split(b"\n")[:-1]] == [1, 3]
