"""Readers for localization datasets exactly as users download them.

Every reader returns a :class:`LocDataset` of :class:`LocSample` records (boxes ``x0, y0, x1, y1``,
inclusive pixels, original image coordinates) and raises :class:`camkit.errors.DatasetError` with a
one-line message naming the file and line of any malformed input. No torch is imported here; the
torch Dataset lives in :mod:`camkit.datasets.torch_dataset`.
"""

from camkit.datasets.csv_boxes import read_csv_boxes
from camkit.datasets.cub import read_cub
from camkit.datasets.ilsvrc import read_ilsvrc, read_ilsvrc_kaggle, read_ilsvrc_xml, read_synset_mapping
from camkit.datasets.layouts import LAYOUTS, read_layout
from camkit.datasets.sample import LocDataset, LocSample
from camkit.datasets.wsol_metadata import read_wsol_metadata

__all__ = [
    "LAYOUTS",
    "LocDataset",
    "LocSample",
    "read_csv_boxes",
    "read_cub",
    "read_ilsvrc",
    "read_ilsvrc_kaggle",
    "read_ilsvrc_xml",
    "read_layout",
    "read_synset_mapping",
    "read_wsol_metadata",
]
