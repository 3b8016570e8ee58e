"""camkit.datasets: the readers on the real ILSVRC sample, a hand-annotated CUB fixture, and bad input."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from camkit.datasets import (
    LocDataset,
    LocSample,
    read_csv_boxes,
    read_cub,
    read_ilsvrc,
    read_ilsvrc_kaggle,
    read_ilsvrc_xml,
    read_synset_mapping,
    read_wsol_metadata,
)
from camkit.datasets.imagenet_wnids import IMAGENET_SYNSET_NAMES, IMAGENET_WNIDS
from camkit.errors import DatasetError, ImageError

SAMPLE = Path(__file__).resolve().parents[2] / "shared/data/ilsvrc_val_sample"
needs_sample = pytest.mark.skipif(
    not SAMPLE.is_dir(), reason=f"the ILSVRC val sample is not at {SAMPLE} (../shared/data next to the repository)"
)

_FIXTURES = Path(__file__).with_name("fixtures")
_spec = importlib.util.spec_from_file_location("make_cub_fixture", _FIXTURES / "make_cub_fixture.py")
make_cub_fixture_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_cub_fixture_module)
CUB_SPEC = make_cub_fixture_module.load_annotations()


def assert_one_line(err: pytest.ExceptionInfo, *fragments: str) -> None:
    message = str(err.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


# --------------------------------------------------------------------------------------------
# ILSVRC: the real 12-image sample in three layouts


def _key(s: LocSample):
    return s.image_path


@needs_sample
def test_ilsvrc_three_layouts_give_identical_samples():
    xml = read_ilsvrc_xml(SAMPLE / "val", SAMPLE / "bbox")
    kaggle = read_ilsvrc_kaggle(SAMPLE / "val", SAMPLE / "LOC_val_solution.csv", SAMPLE / "LOC_synset_mapping.txt")
    wsol = read_wsol_metadata(SAMPLE / "metadata/ILSVRC/test", SAMPLE)
    assert len(xml) == len(kaggle) == len(wsol) == 12
    assert sum(len(s.boxes) for s in xml) == 13  # README: 12 photos, 13 boxes
    for a, b, c in zip(sorted(xml, key=_key), sorted(kaggle, key=_key), sorted(wsol, key=_key), strict=True):
        assert a.image_path == b.image_path == c.image_path
        assert a.image_path.is_absolute() and a.image_path.is_file()
        assert a.class_index == b.class_index == c.class_index
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.boxes, c.boxes)
        assert a.boxes.dtype == np.float64 and a.boxes.shape[1] == 4
        with Image.open(a.image_path) as im:
            assert (a.width, a.height) == (c.width, c.height) == im.size
        assert (b.width, b.height) == (None, None)  # Kaggle carries no sizes
    assert xml.n_clipped_boxes == kaggle.n_clipped_boxes == wsol.n_clipped_boxes == 0
    assert xml.class_ids == kaggle.class_ids == wsol.class_ids == list(IMAGENET_WNIDS)


@needs_sample
def test_ilsvrc_class_index_is_sorted_wnid_position_and_matches_torchvision():
    xml = read_ilsvrc_xml(SAMPLE / "val", SAMPLE / "bbox")
    by_id = {s.image_id: s for s in xml}
    # ILSVRC2012_val_00000053: two boxes of n04372370 ("switch, electric switch") at 307,165,374,282 and
    # 235,162,316,289 in the XML; n04372370 is line 845 of LOC_synset_mapping.txt -> index 844.
    s = by_id["ILSVRC2012_val_00000053"]
    assert s.class_index == 844 and (s.width, s.height) == (500, 375)
    np.testing.assert_array_equal(s.boxes, [[307, 165, 374, 282], [235, 162, 316, 289]])
    lines = (SAMPLE / "LOC_synset_mapping.txt").read_text().splitlines()
    assert lines[844].startswith("n04372370 ")
    # Independent class order: torchvision's ImageNet category list.
    from torchvision.models import ResNet50_Weights

    categories = ResNet50_Weights.IMAGENET1K_V1.meta["categories"]
    for sample in xml:
        wnid = xml.class_ids[sample.class_index]
        assert wnid == ET_name(SAMPLE / "bbox" / f"{sample.image_id}.xml")
        assert categories[sample.class_index] == xml.class_names[sample.class_index].split(",")[0]


def ET_name(path: Path) -> str:
    return re.search(r"<name>(n\d{8})</name>", path.read_text()).group(1)


@needs_sample
def test_read_ilsvrc_autodetects_and_accepts_each_annotation_kind():
    auto = read_ilsvrc(SAMPLE)
    assert "XML" in auto.source
    expected = sorted(((s.image_path, s.class_index, s.boxes.tolist()) for s in auto), key=str)
    for ann in (SAMPLE / "bbox", SAMPLE / "LOC_val_solution.csv", SAMPLE / "metadata/ILSVRC/test"):
        ds = read_ilsvrc(SAMPLE, annotations=ann)
        got = sorted(((s.image_path, s.class_index, s.boxes.tolist()) for s in ds), key=str)
        assert got == expected, ann
    with pytest.raises(DatasetError) as err:
        read_ilsvrc(SAMPLE, annotations=SAMPLE / "README.md")
    assert_one_line(err, "README.md", "LOC_val_solution.csv")


@needs_sample
def test_builtin_wnid_list_equals_the_mapping_file_and_is_used_without_one(tmp_path):
    wnids, names = read_synset_mapping(SAMPLE / "LOC_synset_mapping.txt")
    assert wnids == list(IMAGENET_WNIDS) and names == list(IMAGENET_SYNSET_NAMES) and len(wnids) == 1000
    # No LOC_synset_mapping.txt in or above these folders: the built-in list must give the same indices.
    (tmp_path / "bbox").mkdir()
    (tmp_path / "val").mkdir()
    for xml in (SAMPLE / "bbox").glob("*.xml"):
        shutil.copy(xml, tmp_path / "bbox" / xml.name)
    for jpeg in (SAMPLE / "val").glob("*.JPEG"):
        os.symlink(jpeg, tmp_path / "val" / jpeg.name)  # never copy the ImageNet photos
    builtin = read_ilsvrc(tmp_path)
    reference = read_ilsvrc_xml(SAMPLE / "val", SAMPLE / "bbox")
    assert [s.class_index for s in builtin] == [s.class_index for s in reference]
    assert [s.image_id for s in builtin] == [s.image_id for s in reference]


# --------------------------------------------------------------------------------------------
# ILSVRC: bad input and clipping (synthetic files)


def _write_xml(path: Path, width: int, height: int, objects: list[tuple[str, tuple]]) -> None:
    objs = "".join(
        f"<object><name>{w}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax>"
        f"<ymax>{b[3]}</ymax></bndbox></object>"
        for w, b in objects
    )
    path.write_text(
        f"<annotation><filename>{path.stem}</filename><size><width>{width}</width><height>{height}</height>"
        f"<depth>3</depth></size>{objs}</annotation>"
    )


def test_xml_boxes_outside_the_image_are_clipped_and_counted(tmp_path):
    Image.new("RGB", (100, 80)).save(tmp_path / "ILSVRC2012_val_00000001.JPEG")
    Image.new("RGB", (50, 50)).save(tmp_path / "ILSVRC2012_val_00000002.JPEG")
    _write_xml(tmp_path / "ILSVRC2012_val_00000001.xml", 100, 80,
               [("n01440764", (10, 10, 120, 90)), ("n01440764", (0, 0, 99, 79))])
    _write_xml(tmp_path / "ILSVRC2012_val_00000002.xml", 50, 50, [("n01443537", (-3, 5, 20, 49))])
    with pytest.warns(UserWarning, match=r"2 box\(es\)"):
        ds = read_ilsvrc_xml(tmp_path, tmp_path, synsets=["n01443537", "n01440764"])
    assert ds.n_clipped_boxes == 2
    # 120 -> W-1 = 99, 90 -> H-1 = 79; the second box already fits; -3 -> 0.
    np.testing.assert_array_equal(ds[0].boxes, [[10, 10, 99, 79], [0, 0, 99, 79]])
    np.testing.assert_array_equal(ds[1].boxes, [[0, 5, 20, 49]])
    # Class index = position in sorted wnid order, whatever order the list was given in.
    assert [s.class_index for s in ds] == [0, 1]
    assert ds.class_ids == ["n01440764", "n01443537"]


def test_xml_errors_name_the_file(tmp_path):
    Image.new("RGB", (10, 10)).save(tmp_path / "a.JPEG")
    (tmp_path / "a.xml").write_text("<annotation>\n<size>\n<width>10</width>\n</annotation>\n")
    with pytest.raises(DatasetError) as err:
        read_ilsvrc_xml(tmp_path, tmp_path, synsets=["n01440764"])
    assert_one_line(err, "a.xml line 4", "not well-formed")

    _write_xml(tmp_path / "a.xml", 10, 10, [("n01440764", (1, 2, "x", 4))])
    with pytest.raises(DatasetError) as err:
        read_ilsvrc_xml(tmp_path, tmp_path, synsets=["n01440764"])
    assert_one_line(err, "a.xml", "<xmax> 'x'")

    _write_xml(tmp_path / "a.xml", 10, 10, [("n09999999", (1, 2, 3, 4))])
    with pytest.raises(DatasetError) as err:
        read_ilsvrc_xml(tmp_path, tmp_path, synsets=["n01440764"])
    assert_one_line(err, "a.xml", "n09999999")

    _write_xml(tmp_path / "a.xml", 10, 10, [("n01440764", (5, 2, 3, 4))])
    with pytest.raises(DatasetError) as err:
        read_ilsvrc_xml(tmp_path, tmp_path, synsets=["n01440764"])
    assert_one_line(err, "a.xml", "x1 < x0")


def test_xml_without_matching_images_is_rejected(tmp_path):
    (tmp_path / "img").mkdir()
    _write_xml(tmp_path / "ILSVRC2012_val_00000001.xml", 10, 10, [("n01440764", (1, 2, 3, 4))])
    with pytest.raises(DatasetError) as err:
        read_ilsvrc_xml(tmp_path / "img", tmp_path, synsets=["n01440764"])
    assert_one_line(err, "ILSVRC2012_val_00000001.JPEG", str(tmp_path / "img"))


@pytest.mark.parametrize(
    ("row", "fragment"),
    [
        ("ILSVRC2012_val_00000004,n0175 12 x", "expected 'wnid x1 y1 x2 y2' groups, got 'n0175 12 x'"),
        ("ILSVRC2012_val_00000004,n01440764 1 2 3 x", "expected 'wnid x1 y1 x2 y2' groups"),
        ("ILSVRC2012_val_00000004,n01440764 1 2 3 4,extra", "expected 'ImageId,wnid x1 y1 x2 y2 ...'"),
        ("ILSVRC2012_val_00000004,n01440764 1 2 3 4 n01443537 1 2 3 4", "two classes"),
    ],
)
def test_kaggle_malformed_rows_name_file_and_line(tmp_path, row, fragment):
    csv_path = tmp_path / "LOC_val_solution.csv"
    csv_path.write_text("ImageId,PredictionString\nILSVRC2012_val_00000001,n01440764 1 2 3 4 \n" + row + "\n")
    with pytest.raises(DatasetError) as err:
        read_ilsvrc_kaggle(tmp_path, csv_path, ["n01440764", "n01443537"])
    assert_one_line(err, "LOC_val_solution.csv line 3", fragment)


def test_kaggle_bad_header_and_synset_mapping(tmp_path):
    csv_path = tmp_path / "LOC_val_solution.csv"
    csv_path.write_text("id,boxes\nx,n01440764 1 2 3 4\n")
    with pytest.raises(DatasetError) as err:
        read_ilsvrc_kaggle(tmp_path, csv_path, ["n01440764"])
    assert_one_line(err, "LOC_val_solution.csv line 1", "ImageId,PredictionString")
    mapping = tmp_path / "LOC_synset_mapping.txt"
    mapping.write_text("n01440764 tench, Tinca tinca\ntench n01443537\n")
    with pytest.raises(DatasetError) as err:
        read_synset_mapping(mapping)
    assert_one_line(err, "LOC_synset_mapping.txt line 2", "'tench n01443537'")


# --------------------------------------------------------------------------------------------
# wsolevaluation metadata


def test_wsol_openimages_masks_parse_like_the_reference(tmp_path):
    meta = tmp_path / "metadata/OpenImages/test"
    meta.mkdir(parents=True)
    # Lines in the format of wsolevaluation's metadata/OpenImages/test (first two images there).
    (meta / "image_ids.txt").write_text("test/01226z/7af766bd43da900b.jpg\ntest/01226z/973645e9516726b3.jpg\n")
    (meta / "class_labels.txt").write_text("test/01226z/7af766bd43da900b.jpg,0\ntest/01226z/973645e9516726b3.jpg,0\n")
    (meta / "localization.txt").write_text(
        "test/01226z/7af766bd43da900b.jpg,test/01226z/7af766bd43da900b_m01226z_6554d965.png,"
        "test/01226z/7af766bd43da900b_ignore.png\n"
        "test/01226z/7af766bd43da900b.jpg,test/01226z/7af766bd43da900b_m01226z_8856c605.png,\n"
        "test/01226z/973645e9516726b3.jpg,test/01226z/973645e9516726b3_m01226z_9ad378d4.png,"
        "test/01226z/973645e9516726b3_ignore.png\n"
    )
    ds = read_wsol_metadata(meta, tmp_path / "images", mask_root=tmp_path / "masks")
    assert ds.name == "OpenImages/test" and len(ds) == 2
    first = ds[0]
    assert first.image_path == tmp_path / "images/test/01226z/7af766bd43da900b.jpg"
    assert first.mask_paths == (
        tmp_path / "masks/test/01226z/7af766bd43da900b_m01226z_6554d965.png",
        tmp_path / "masks/test/01226z/7af766bd43da900b_m01226z_8856c605.png",
    )
    assert first.ignore_path == tmp_path / "masks/test/01226z/7af766bd43da900b_ignore.png"
    assert first.boxes.shape == (0, 4) and (first.width, first.height) == (None, None)
    assert len(ds[1].mask_paths) == 1

    # A second mask line that names an ignore file again breaks the reference's assertion.
    text = (meta / "localization.txt").read_text().replace("8856c605.png,\n", "8856c605.png,x_ignore.png\n")
    (meta / "localization.txt").write_text(text)
    with pytest.raises(DatasetError) as err:
        read_wsol_metadata(meta, tmp_path)
    assert_one_line(err, "localization.txt line 2", "empty ignore path")


def _write_wsol_boxes(meta: Path, ids, labels, sizes, boxes) -> None:
    meta.mkdir(parents=True, exist_ok=True)
    (meta / "image_ids.txt").write_text("".join(f"{i}\n" for i in ids))
    (meta / "class_labels.txt").write_text("".join(f"{i},{c}\n" for i, c in labels))
    (meta / "image_sizes.txt").write_text("".join(f"{i},{w},{h}\n" for i, w, h in sizes))
    (meta / "localization.txt").write_text("".join(f"{i},{b[0]},{b[1]},{b[2]},{b[3]}\n" for i, b in boxes))


@pytest.mark.parametrize(
    ("fname", "line", "fragment"),
    [
        ("class_labels.txt", "b.jpg,one", "class_labels.txt line 2: expected 'path,label'"),
        ("image_sizes.txt", "b.jpg,20", "image_sizes.txt line 2: expected 'path,width,height'"),
        ("localization.txt", "b.jpg,1,2,3", "localization.txt line 2: expected 'path,x0,y0,x1,y1'"),
        ("localization.txt", "b.jpg,1,2,3.5,4", "localization.txt line 2: expected 'path,x0,y0,x1,y1' with integer"),
    ],
)
def test_wsol_malformed_lines_name_file_and_line(tmp_path, fname, line, fragment):
    meta = tmp_path / "metadata/CUB/test"
    _write_wsol_boxes(meta, ["a.jpg", "b.jpg"], [("a.jpg", 0), ("b.jpg", 1)],
                      [("a.jpg", 20, 10), ("b.jpg", 20, 10)], [("a.jpg", (1, 2, 3, 4)), ("b.jpg", (1, 2, 3, 4))])
    lines = (meta / fname).read_text().splitlines()
    lines[1] = line
    (meta / fname).write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError) as err:
        read_wsol_metadata(meta, tmp_path)
    assert_one_line(err, fragment)


def test_wsol_missing_box_and_clipping(tmp_path):
    meta = tmp_path / "metadata/CUB/test"
    _write_wsol_boxes(meta, ["a.jpg", "b.jpg"], [("a.jpg", 0), ("b.jpg", 1)],
                      [("a.jpg", 20, 10), ("b.jpg", 20, 10)], [("a.jpg", (1, 2, 3, 4))])
    with pytest.raises(DatasetError) as err:
        read_wsol_metadata(meta, tmp_path)
    assert_one_line(err, "localization.txt has no box for b.jpg (image_ids.txt line 2)")
    # x1 = 20 on a 20-pixel-wide image is one past the last column 19: clipped and counted.
    _write_wsol_boxes(meta, ["a.jpg", "b.jpg"], [("a.jpg", 0), ("b.jpg", 1)],
                      [("a.jpg", 20, 10), ("b.jpg", 20, 10)],
                      [("a.jpg", (1, 2, 3, 4)), ("b.jpg", (0, 0, 20, 9)), ("b.jpg", (5, 5, 6, 6))])
    with pytest.warns(UserWarning, match=r"CUB/test: 1 box\(es\)"):
        ds = read_wsol_metadata(meta, tmp_path)
    assert ds.n_clipped_boxes == 1
    np.testing.assert_array_equal(ds[1].boxes, [[0, 0, 19, 9], [5, 5, 6, 6]])
    assert ds.class_names is None


# --------------------------------------------------------------------------------------------
# CUB-200-2011


@pytest.fixture(scope="module")
def cub_root(tmp_path_factory) -> Path:
    return make_cub_fixture_module.make_cub_fixture(tmp_path_factory.mktemp("cub"))


@pytest.fixture
def cub_copy(cub_root, tmp_path) -> Path:
    """A private copy of the fixture's text files, sharing the images by symlink, for corrupting."""
    root = tmp_path / "CUB_200_2011"
    root.mkdir()
    for f in cub_root.glob("*.txt"):
        shutil.copy(f, root / f.name)
    os.symlink(cub_root / "images", root / "images")
    return root


def _replace_line(path: Path, line_no: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[line_no - 1] = text
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("split", ["test", "train", "all"])
def test_read_cub_gives_the_hand_annotated_samples(cub_root, split):
    ds = read_cub(cub_root, split)
    want = [i for i in CUB_SPEC["images"] if split == "all" or i["is_train"] == (split == "train")]
    assert len(ds) == len(want) == {"test": 6, "train": 3, "all": 9}[split]
    for sample, item in zip(ds, want, strict=True):
        folder = CUB_SPEC["classes"][item["class"] - 1]
        assert sample.image_id == f"{folder}/{item['file']}"
        assert sample.image_path == cub_root.absolute() / "images" / folder / item["file"]
        assert sample.class_index == item["class"] - 1
        x, y, w, h = item["xywh"]
        np.testing.assert_array_equal(sample.boxes, [[x, y, x + w, y + h]])
        with Image.open(sample.image_path) as im:
            assert (sample.width, sample.height) == im.size == tuple(item["size"])
    assert ds.n_clipped_boxes == 0
    assert ds.class_ids == CUB_SPEC["classes"]
    assert ds.class_names == ["Domestic Cat", "Espresso Cup", "Space Rocket", "Astronaut", "Photographer"]
    # Also found when given the folder above CUB_200_2011.
    assert [s.image_path for s in read_cub(cub_root.parent, split)] == [s.image_path for s in ds]


def test_read_cub_golden_rocket(cub_root):
    # Hand-annotated rocket body: x=310, y=127, w=25, h=280 -> x0,y0,x1,y1 = 310,127,335,407
    # (CUB -> wsolevaluation convention x1 = x + w, y1 = y + h); class 3 -> index 2.
    rocket = next(s for s in read_cub(cub_root, "test") if s.image_id.endswith("Space_Rocket_0001_rocket.jpg"))
    assert rocket.class_index == 2 and (rocket.width, rocket.height) == (640, 427)
    np.testing.assert_array_equal(rocket.boxes, [[310, 127, 335, 407]])


def test_cub_matches_wsolevaluation_metadata_for_real_cub_boxes(tmp_path):
    # CUB-200-2011's first lines and wsolevaluation's metadata/CUB/test for the same two images:
    #   1 60.0 27.0 325.0 304.0   -> 001.../Black_Footed_Albatross_0046_18.jpg,60,27,385,331  (500x335)
    #   3 14.0 112.0 388.0 186.0  -> 001.../Black_Footed_Albatross_0002_55.jpg,14,112,402,298 (500x347)
    root = tmp_path / "CUB_200_2011"
    folder = "001.Black_footed_Albatross"
    (root / "images" / folder).mkdir(parents=True)
    names = {1: "Black_Footed_Albatross_0046_18.jpg", 3: "Black_Footed_Albatross_0002_55.jpg"}
    Image.new("RGB", (500, 335)).save(root / "images" / folder / names[1])
    Image.new("RGB", (500, 347)).save(root / "images" / folder / names[3])
    (root / "images.txt").write_text("".join(f"{k} {folder}/{n}\n" for k, n in names.items()))
    (root / "bounding_boxes.txt").write_text("1 60.0 27.0 325.0 304.0\n3 14.0 112.0 388.0 186.0\n")
    (root / "image_class_labels.txt").write_text("1 1\n3 1\n")
    (root / "train_test_split.txt").write_text("1 0\n3 0\n")
    (root / "classes.txt").write_text(f"1 {folder}\n")
    meta = tmp_path / "metadata/CUB/test"
    _write_wsol_boxes(
        meta, [f"{folder}/{n}" for n in names.values()], [(f"{folder}/{n}", 0) for n in names.values()],
        [(f"{folder}/{names[1]}", 500, 335), (f"{folder}/{names[3]}", 500, 347)],
        [(f"{folder}/{names[1]}", (60, 27, 385, 331)), (f"{folder}/{names[3]}", (14, 112, 402, 298))],
    )
    cub = read_cub(root, "test")
    wsol = read_wsol_metadata(meta, root / "images")
    assert cub.samples == wsol.samples


@pytest.mark.parametrize(
    ("fname", "line_no", "bad", "fragment"),
    [
        ("images.txt", 4, "4", "images.txt line 4: expected '<image id> <relative path>', got '4'"),
        ("bounding_boxes.txt", 4, "4 72.0 17.0 236.0", "bounding_boxes.txt line 4: expected '<image id> <x> <y>"),
        ("bounding_boxes.txt", 4, "4 72.0 17.0 wide 286.0",
         "line 4: expected '<image id> <x> <y> <width> <height>' with width, height >= 0, got '4 72.0 17.0 wide 286.0'"),
        ("image_class_labels.txt", 4, "four 2", "image_class_labels.txt line 4: expected '<image id> <class id>'"),
        ("image_class_labels.txt", 3, "3 9", "image_class_labels.txt line 3: expected '<image id> <class id 1..5>'"),
        ("train_test_split.txt", 3, "3 yes", "train_test_split.txt line 3: expected '<image id> <is_training_image"),
        ("classes.txt", 2, "2", "classes.txt line 2: expected '<class id> <class name>', got '2'"),
        ("bounding_boxes.txt", 3, "3 172.0 17.0 -236.0 286.0",
         "line 3: expected '<image id> <x> <y> <width> <height>' with width, height >= 0, got '3 172.0 17.0 -236.0"),
    ],
)
def test_cub_malformed_lines_name_file_and_line(cub_copy, fname, line_no, bad, fragment):
    _replace_line(cub_copy / fname, line_no, bad)
    with pytest.raises(DatasetError) as err:
        read_cub(cub_copy, "all")
    assert_one_line(err, str(cub_copy / fname), fragment)


def test_cub_missing_entries_are_named(cub_copy):
    lines = (cub_copy / "bounding_boxes.txt").read_text().splitlines()
    (cub_copy / "bounding_boxes.txt").write_text("\n".join(lines[:6] + lines[7:]) + "\n")  # drop id 7
    with pytest.raises(DatasetError) as err:
        read_cub(cub_copy)
    assert_one_line(err, "bounding_boxes.txt has no line for image id 7 (images.txt line 7)")
    with pytest.raises(DatasetError) as err:
        read_cub(cub_copy, "val")
    assert_one_line(err, "'val'")
    with pytest.raises(DatasetError) as err:
        read_cub(cub_copy.parent / "nowhere")
    assert_one_line(err, "images.txt", "CUB_200_2011")


def test_cub_out_of_image_boxes_are_clipped_and_counted(cub_copy):
    # Rocket photo is 640x427: x=600,w=100 -> x1=700 -> 639; y=400,h=100 -> y1=500 -> 426.
    _replace_line(cub_copy / "bounding_boxes.txt", 5, "5 600.0 400.0 100.0 100.0")
    # Cat photo is 451x300: x=-5 -> 0; x1 = -5+393 = 388 stays; y1 = 0+299 = 299 = H-1 stays.
    _replace_line(cub_copy / "bounding_boxes.txt", 1, "1 -5.0 0.0 393.0 299.0")
    # Flipped cat, x1 = 57 + 394 = 451 = W: one past the last column, clipped to 450.
    _replace_line(cub_copy / "bounding_boxes.txt", 2, "2 57.0 0.0 394.0 299.0")
    with pytest.warns(UserWarning, match=r"CUB-200-2011 all: 3 box\(es\) reached outside"):
        ds = read_cub(cub_copy, "all")
    assert ds.n_clipped_boxes == 3
    by_file = {s.image_id.split("/")[1]: s.boxes.tolist() for s in ds}
    assert by_file["Space_Rocket_0001_rocket.jpg"] == [[600, 400, 639, 426]]
    assert by_file["Domestic_Cat_0001_chelsea.jpg"] == [[0, 0, 388, 299]]
    assert by_file["Domestic_Cat_0002_chelsea_flip.jpg"] == [[57, 0, 450, 299]]
    assert by_file["Astronaut_0001_astronaut.jpg"] == [[20, 16, 360, 511]]


def test_cub_missing_image_keeps_unknown_size(cub_copy):
    _replace_line(cub_copy / "images.txt", 7, "7 004.Astronaut/no_such_file.jpg")
    with pytest.warns(UserWarning, match="1 image"):
        ds = read_cub(cub_copy, "test")
    missing = next(s for s in ds if s.image_id.endswith("no_such_file.jpg"))
    assert (missing.width, missing.height) == (None, None)
    assert missing.boxes.tolist() == [[20, 16, 360, 511]]


# --------------------------------------------------------------------------------------------
# plain CSV


def test_csv_rows_merge_per_image_and_paths_resolve(tmp_path):
    csv_path = tmp_path / "boxes.csv"
    csv_path.write_text(
        "image_path,class_index,x1,y1,x2,y2\n"
        "a.jpg,3,1,2,10,20\n"
        "sub/b.png,0,5.5,6,7,8\n"
        "a.jpg,3,-4,0,2,2\n"
        f"{tmp_path / 'abs.jpg'},1,0,0,1,1\n"
    )
    with pytest.warns(UserWarning, match=r"1 box\(es\)"):
        ds = read_csv_boxes(csv_path)
    assert [s.image_id for s in ds] == ["a.jpg", "sub/b.png", str(tmp_path / "abs.jpg")]
    assert [s.image_path for s in ds] == [tmp_path / "a.jpg", tmp_path / "sub/b.png", tmp_path / "abs.jpg"]
    assert [s.class_index for s in ds] == [3, 0, 1]
    np.testing.assert_array_equal(ds[0].boxes, [[1, 2, 10, 20], [0, 0, 2, 2]])  # -4 clipped to 0
    np.testing.assert_array_equal(ds[1].boxes, [[5.5, 6, 7, 8]])
    assert ds.n_clipped_boxes == 1 and (ds[0].width, ds[0].height) == (None, None)
    with pytest.warns(UserWarning, match=r"1 box\(es\)"):
        other = read_csv_boxes(csv_path, image_root=tmp_path / "photos", class_names=["a", "b", "c", "d"])
    assert other[0].image_path == tmp_path / "photos/a.jpg" and other.class_names == ["a", "b", "c", "d"]


@pytest.mark.parametrize(
    ("body", "kwargs", "fragment"),
    [
        ("a.jpg,0,1,2,3\n", {}, "boxes.csv line 3: expected 'image_path,class_index,x1,y1,x2,y2'"),
        ("a.jpg,zero,1,2,3,4\n", {}, "boxes.csv line 3: expected"),
        ("a.jpg,1,1,2,3,4\n", {}, "boxes.csv line 3: a.jpg has class 1 but class 0 on line 2"),
        ("b.jpg,2,1,2,3,4\n", {"class_names": ["x", "y"]}, "boxes.csv line 3: class_index 2 is out of range"),
        ("b.jpg,0,9,2,3,4\n", {}, "boxes.csv line 3: box"),
    ],
)
def test_csv_errors_name_file_and_line(tmp_path, body, kwargs, fragment):
    csv_path = tmp_path / "boxes.csv"
    csv_path.write_text("image_path,class_index,x1,y1,x2,y2\na.jpg,0,1,2,3,4\n" + body)
    with pytest.raises(DatasetError) as err:
        read_csv_boxes(csv_path, **kwargs)
    assert_one_line(err, fragment)


def test_csv_header_must_name_the_columns(tmp_path):
    csv_path = tmp_path / "boxes.csv"
    csv_path.write_text("path,label,x1,y1,x2,y2\na.jpg,0,1,2,3,4\n")
    with pytest.raises(DatasetError) as err:
        read_csv_boxes(csv_path)
    assert_one_line(err, "boxes.csv line 1", "image_path, class_index")


# --------------------------------------------------------------------------------------------
# torch Dataset


def _loader_failing_on(broken: Path, gray: Path | None = None):
    """A loader that raises a two-line ImageError for ``broken`` and reads ``gray`` as mode L, the rest as RGB."""

    def load(path: Path) -> Image.Image:
        if path == broken:
            raise ImageError(f"{path} is truncated\nre-download it")
        with Image.open(path) as im:
            return im.convert("L" if path == gray else "RGB")

    return load


def test_localization_images_survive_unreadable_images(cub_root):
    torch = pytest.importorskip("torch")
    from camkit.datasets.torch_dataset import LocalizationImages, collate_localization

    ds = read_cub(cub_root, "all")
    broken = ds[2].image_path
    load = _loader_failing_on(broken)

    def transform(image: Image.Image) -> torch.Tensor:
        arr = np.asarray(image.resize((32, 32), Image.BILINEAR), dtype=np.float32) / 255.0
        return torch.from_numpy(arr).permute(2, 0, 1)

    images = LocalizationImages(ds, transform, load=load)
    assert len(images) == 9
    item = images[0]
    assert item["error"] == "" and item["image"].shape == (3, 32, 32)
    assert (item["width"], item["height"]) == (ds[0].width, ds[0].height) == (451, 300)
    failed = images[2]
    assert failed["image"] is None and failed["error"] == f"{broken} is truncated re-download it"
    assert (failed["width"], failed["height"]) == (ds[2].width, ds[2].height)

    loader = torch.utils.data.DataLoader(images, batch_size=4, collate_fn=collate_localization)
    batches = list(loader)
    assert [b["indices"].tolist() for b in batches] == [[0, 1, 3], [4, 5, 6, 7], [8]]
    assert batches[0]["images"].shape == (3, 3, 32, 32)
    assert batches[0]["failed"] == [(2, failed["error"])] and batches[1]["failed"] == []
    assert batches[0]["widths"] == [451, 451, 400] and batches[0]["heights"] == [300, 300, 380]
    # The stacked tensors are the transforms of the right images.
    torch.testing.assert_close(batches[1]["images"][0], transform(load(ds[4].image_path)))
    # A batch of only failures still collates.
    only_bad = collate_localization([failed])
    assert only_bad["images"] is None and only_bad["indices"].tolist() == []
    assert only_bad["failed"] == [(2, failed["error"])]


def test_a_batch_read_into_one_tensor_equals_the_stacked_batch(cub_root):
    torch = pytest.importorskip("torch")
    from camkit.datasets.torch_dataset import LocalizationImages, collate_localization
    from camkit.evaluate.loop import SquashTransform
    from camkit.preprocess import Preprocess

    ds = read_cub(cub_root, "all")
    load = _loader_failing_on(ds[1].image_path, gray=ds[3].image_path)  # the gray one takes the general path
    images = LocalizationImages(ds, SquashTransform(Preprocess().with_input_size(64)), load=load)
    stacked = collate_localization([images[i] for i in range(5)])
    rows = torch.full((5, 3, 64, 64), float("nan"))
    items = [images.read(i, rows[i]) for i in range(5)]
    assert items[0]["image"].data_ptr() == rows[0].data_ptr()  # written in place, not copied
    into = collate_localization(items, rows)
    assert into["indices"].tolist() == stacked["indices"].tolist() == [0, 2, 3, 4]
    assert into["failed"] == stacked["failed"] and len(into["failed"]) == 1
    assert torch.equal(into["images"], stacked["images"])  # the good rows only, bit for bit
    whole = collate_localization(items[:1], rows[:1])
    assert whole["images"].data_ptr() == rows.data_ptr()  # all good: the tensor itself


def test_localization_images_catch_any_loader_error(tmp_path):
    pytest.importorskip("torch")
    from camkit.datasets.torch_dataset import LocalizationImages

    ds = LocDataset("x", [LocSample(tmp_path / "gone.jpg", "gone.jpg", 0, np.zeros((1, 4)))])
    images = LocalizationImages(ds, transform=lambda im: None, load=lambda p: Image.open(p))
    item = images[0]
    assert item["image"] is None and item["error"].startswith(f"{tmp_path / 'gone.jpg'}: FileNotFoundError")
    assert "\n" not in item["error"]


def test_read_ilsvrc_finds_the_tarball_and_kaggle_folder_layouts(tmp_path):
    # ILSVRC2012_bbox_val_v3.tgz extracts to val/*.xml; users often put the JPEGs in the same folder.
    tar_root = tmp_path / "tar"
    (tar_root / "val").mkdir(parents=True)
    Image.new("RGB", (30, 20)).save(tar_root / "val/ILSVRC2012_val_00000001.JPEG")
    _write_xml(tar_root / "val/ILSVRC2012_val_00000001.xml", 30, 20, [("n01443537", (1, 2, 3, 4))])
    ds = read_ilsvrc(tar_root)
    assert ds.source == f"PASCAL-VOC XML in {tar_root / 'val'}"
    assert ds[0].image_path == tar_root / "val/ILSVRC2012_val_00000001.JPEG"
    assert ds[0].class_index == 1  # built-in list: n01443537 (goldfish) is the second wnid
    assert ds.class_names[1] == "goldfish, Carassius auratus"

    # Kaggle's zip: LOC_* files at the top, images under ILSVRC/Data/CLS-LOC/val/.
    kaggle = tmp_path / "kaggle"
    (kaggle / "ILSVRC/Data/CLS-LOC/val").mkdir(parents=True)
    Image.new("RGB", (30, 20)).save(kaggle / "ILSVRC/Data/CLS-LOC/val/ILSVRC2012_val_00000001.JPEG")
    (kaggle / "LOC_synset_mapping.txt").write_text("n01443537 goldfish\nn01440764 tench\n")
    (kaggle / "LOC_val_solution.csv").write_text(
        "ImageId,PredictionString\nILSVRC2012_val_00000001,n01443537 1 2 3 4 \n"
    )
    ds = read_ilsvrc(kaggle)
    assert ds.source.startswith("Kaggle")
    assert ds[0].image_path == kaggle / "ILSVRC/Data/CLS-LOC/val/ILSVRC2012_val_00000001.JPEG"
    # The mapping beside the CSV defines the classes: sorted, tench (n01440764) = 0, goldfish = 1.
    assert ds.class_ids == ["n01440764", "n01443537"] and ds.class_names == ["tench", "goldfish"]
    assert ds[0].class_index == 1
    np.testing.assert_array_equal(ds[0].boxes, [[1, 2, 3, 4]])
    with pytest.raises(DatasetError) as err:
        read_ilsvrc(tmp_path / "tar" / "val" / "ILSVRC2012_val_00000001.JPEG")
    assert_one_line(err, "is not a folder")


def test_localization_images_default_loader_reports_missing_files(cub_root, tmp_path):
    torch = pytest.importorskip("torch")
    io = pytest.importorskip("camkit.io")
    if not hasattr(io, "load_image"):
        pytest.skip("camkit.io.load_image is not available yet")
    from camkit.datasets.torch_dataset import LocalizationImages, collate_localization

    ds = read_cub(cub_root, "test")
    ds.samples[1] = LocSample(tmp_path / "missing.jpg", "missing.jpg", 0, np.zeros((1, 4)))

    def transform(image: Image.Image) -> torch.Tensor:
        return torch.from_numpy(np.asarray(image.resize((16, 16)), dtype=np.float32)).permute(2, 0, 1)

    images = LocalizationImages(ds, transform)
    batch = collate_localization([images[i] for i in range(len(images))])
    assert batch["indices"].tolist() == [0, 2, 3, 4, 5]
    assert batch["images"].shape == (5, 3, 16, 16)  # the grayscale CUB photo comes back RGB
    assert batch["widths"] == [451, 640, 182, 512, 512]
    [(index, message)] = batch["failed"]
    assert index == 1 and str(tmp_path / "missing.jpg") in message and "\n" not in message
