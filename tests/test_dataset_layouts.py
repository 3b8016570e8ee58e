"""``camkit.datasets.read_layout``: the one dispatch from a layout name to a reader, shared by ``camkit evaluate``,
``camkit sanity`` and the run viewer; the same samples as the reader called directly, and one-line errors
that name the parameter (the CLI shows them as flags)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from camkit.cli.app import app
from camkit.datasets import read_ilsvrc, read_layout
from camkit.errors import DatasetError, ParameterError


def test_read_layout_is_the_reader(ilsvrc_sample):
    direct = read_ilsvrc(ilsvrc_sample)
    for kind in ("ilsvrc", "ILSVRC"):
        ds = read_layout(kind, ilsvrc_sample)
        assert ds.samples == direct.samples and ds.source == direct.source and len(ds) == 12


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda d: read_layout("voc", d), ParameterError, "kind='voc' is not a dataset layout; use one of ilsvrc, cub, wsol, csv"),
    (lambda d: read_layout("cub", d / "missing"), ParameterError, "is not a folder; pass the dataset's root folder"),
    (lambda d: read_layout("csv", d), DatasetError, "the csv layout needs its boxes file: pass annotations=CSV"),
    (lambda d: read_layout("ilsvrc", d, mask_root=d), ParameterError, "applies to the wsol layout (OpenImages masks), not ilsvrc"),
    (lambda d: read_layout("wsol", d), DatasetError, "no wsolevaluation split folders"),
])
def test_read_layout_errors_name_the_parameter(tmp_path, call, error, message):
    with pytest.raises(error) as err:
        call(tmp_path)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(("args", "message"), [
    (["--dataset", "voc"], "error: --dataset 'voc' is not a dataset layout"),
    (["--dataset", "csv"], "pass --annotations CSV"),
    (["--dataset", "cub", "--mask-root", "."], "--mask-root '.' applies to the wsol layout"),
])
def test_cli_shows_the_flags(tmp_path, args, message):
    for command in (["evaluate", "--out", str(tmp_path / "out")], ["sanity", "--out", str(tmp_path / "s")]):
        if command[0] == "sanity" and "--mask-root" in args:
            continue  # sanity has no --mask-root
        r = CliRunner().invoke(app, [*command, "--root", str(tmp_path), *args])
        assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output, (command, r.output)
