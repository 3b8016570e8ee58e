"""Dataset readers: CSV boxes outside their image are clipped to it with a warning (as XML boxes are)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from camkit.datasets import read_csv_boxes


def test_csv_box_beyond_the_image_is_clipped_and_warned(tmp_path):
    Image.new("RGB", (40, 30)).save(tmp_path / "a.png")  # 40 wide, 30 high
    Image.new("RGB", (50, 50)).save(tmp_path / "b.png")
    csv_path = tmp_path / "boxes.csv"
    csv_path.write_text("image_path,class_index,x1,y1,x2,y2\na.png,0,5,6,100,29\nb.png,1,1,2,3,4\n")
    with pytest.warns(UserWarning, match=r"boxes: 1 box\(es\) reached outside their image and were clipped"):
        ds = read_csv_boxes(csv_path)
    np.testing.assert_array_equal(ds[0].boxes, [[5, 6, 39, 29]])
    np.testing.assert_array_equal(ds[1].boxes, [[1, 2, 3, 4]])
    assert (ds[0].width, ds[0].height) == (40, 30) and ds.n_clipped_boxes == 1


def test_csv_box_entirely_outside_the_image_is_an_error(tmp_path):
    Image.new("RGB", (40, 30)).save(tmp_path / "a.png")
    csv_path = tmp_path / "boxes.csv"
    csv_path.write_text("image_path,class_index,x1,y1,x2,y2\na.png,0,50,6,100,20\n")
    from camkit.errors import DatasetError

    with pytest.raises(DatasetError, match=r"boxes.csv line 2: box 50,6,100,20 lies outside a.png \(40x30\)"):
        read_csv_boxes(csv_path)
