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
