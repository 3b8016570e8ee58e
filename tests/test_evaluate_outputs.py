"""A run's outputs read its records once (camkit.evaluate.outputs)."""

from __future__ import annotations

import numpy as np


def test_outputs_parse_the_records_once_in_index_order():
    """finish_run's outputs share one parse of records.jsonl (per-tau curves as float64 arrays, as the report
    reads them), in index order whatever the file's order."""
    from camkit.evaluate.outputs import _parsed_once

    calls = []

    def records():
        calls.append(1)
        return iter([{"i": 2, "v1": [0.5, 0.25]}, {"i": 0, "v1": [0.1, 0.2], "v2": [0.3, 0.4]}, {"i": 1, "error": "x"}])

    kept = _parsed_once(records)
    first, second = list(kept()), list(kept())
    assert calls == [1] and first == second and [r["i"] for r in first] == [0, 1, 2]
    assert isinstance(first[0]["v2"], np.ndarray) and first[0]["v2"].dtype == np.float64
    assert first[2]["v1"].tolist() == [0.5, 0.25]


def test_summary_counted_in_chunks_equals_counted_whole(monkeypatch, ilsvrc_sample, lite0, tmp_path):
    """summarize() feeds its evaluators CHUNK records at a time: any chunk size (failures and a top-k length
    change at chunk edges included) gives the same summary as one chunk holding everything."""
    import json

    from camkit.datasets import read_layout
    from camkit.evaluate import evaluate, summary
    from camkit.evaluate.protocol import Protocol
    from camkit.evaluate.records import iter_records

    evaluate(read_layout("ilsvrc", ilsvrc_sample), lite0, batch_size=12, out_dir=tmp_path / "run", progress=False,
             gallery_size=0)
    records = list(iter_records(tmp_path / "run" / "records.jsonl"))
    records.insert(5, {"i": 99, "id": "broken", "error": "cannot read"})
    longer = dict(records[7], i=100, id="six guesses", topk=records[7]["topk"] + [999])  # top-6: another length
    records = records + [longer]
    whole = summary.summarize(records, Protocol(), model={}, dataset={})
    for chunk in (1, 2, 5):
        monkeypatch.setattr(summary, "_CHUNK", chunk)
        assert json.dumps(summary.summarize(records, Protocol(), model={}, dataset={}), sort_keys=True) == json.dumps(
            whole, sort_keys=True), chunk
    assert whole["n_failed"] == 1 and whole["n_images"] == 13
