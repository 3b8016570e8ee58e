"""The evaluate batch loop: the squash transform's table lookup is bit-identical to ``Preprocess.to_array``;
the per-image work on any number of helper threads (reading the images too, or with DataLoader workers)
gives exactly the one-thread records, in batch order; an interrupt or an error leaves only whole batches in
the sink and no helper thread behind."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import skimage.data
from PIL import Image

from camkit.cam.sources import make_map_source
from camkit.datasets import read_ilsvrc
from camkit.evaluate import loop
from camkit.evaluate.loop import LoopOptions, SquashTransform, batch_partition, run_batches
from camkit.evaluate.protocol import Protocol
from camkit.io import load_image
from camkit.preprocess import Preprocess


def _photos() -> list[Image.Image]:
    photos = [load_image(getattr(skimage.data, name)()) for name in ("chelsea", "coffee", "astronaut", "camera", "rocket")]
    noise = np.random.RandomState(0).randint(0, 256, (37, 501, 3), dtype=np.uint8)
    return photos + [Image.fromarray(noise), Image.fromarray(np.zeros((3, 2, 3), np.uint8))]


@pytest.mark.parametrize("pre", [
    Preprocess(interpolation="bicubic", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),  # the embedded model's
    Preprocess(),  # torchvision's ImageNet bilinear
    Preprocess(interpolation="nearest", mean=(0.1, 0.2, 0.3), std=(0.3, 0.2, 0.1)),
])
def test_squash_transform_is_bit_identical_to_to_array(pre):
    for size in (224, 97, 448):
        p = pre.with_input_size(size)
        tf = SquashTransform(p)
        for photo in _photos():
            got, want = tf.array(photo), p.to_array(photo, "squash")[0]
            assert got.dtype == np.float32 and got.shape == want.shape == (3, size, size)
            assert got.flags.c_contiguous
            assert np.array_equal(got.view(np.uint32), want.view(np.uint32))  # bits, not just values
    gray = Image.fromarray(skimage.data.camera())  # mode L: the general path
    assert np.array_equal(SquashTransform(pre).array(gray), pre.to_array(gray, "squash")[0])


@pytest.mark.parametrize("size", [224, 97])
@pytest.mark.parametrize("interpolation", ["bicubic", "nearest"])
def test_squash_transform_writes_a_channels_last_row_with_the_same_bits(size, interpolation):
    """A row of a channels-last batch (what the loop reads into for a channels-last model): the same bits as
    the planar path, for RGB photos (bicubic: the compiled kernel's interleaved lookup; nearest: Pillow's pixels
    through a 3-channel cv2.LUT) and the general path (a grey photo)."""
    import torch

    p = Preprocess(interpolation=interpolation, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)).with_input_size(size)
    tf = SquashTransform(p)
    photos = [*_photos(), Image.fromarray(skimage.data.camera())]
    batch = torch.empty((len(photos), 3, size, size), memory_format=torch.channels_last).fill_(float("nan"))
    assert not batch[0].is_contiguous()
    for b, photo in enumerate(photos):
        row = batch[b]
        assert tf(photo, row) is row
    assert batch.is_contiguous(memory_format=torch.channels_last)  # written in place, not replaced
    for b, photo in enumerate(photos):
        want = p.to_array(photo, "squash")[0]
        assert np.array_equal(batch[b].numpy().view(np.uint32), want.view(np.uint32))
    # any other strides (here every other column of a wider tensor): the same values, in place
    wide = torch.full((3, size, 2 * size), float("nan"))
    view = wide[:, :, ::2]
    assert tf(photos[0], view) is view
    assert np.array_equal(view.numpy(), p.to_array(photos[0], "squash")[0])
    assert torch.isnan(wide[:, :, 1::2]).all()


def _run(samples, lite0, helpers: int, todo=None, source=None, batch_size=5, workers=0, channels_last=False):
    protocol = Protocol()
    batches = batch_partition(len(samples), batch_size)
    got: list[list] = []
    seen: list[tuple[int, int]] = []
    run_batches(samples, batches, set(range(len(samples))) if todo is None else todo, protocol,
                source or make_map_source(lite0), lite0.preprocess.with_input_size(224), got.append,
                LoopOptions(workers=workers, helpers=helpers, channels_last=channels_last),
                progress=lambda d, t: seen.append((d, t)))
    return [[r.to_dict() for r in batch] for batch in got], seen


@pytest.fixture(scope="module")
def serial(lite0, ilsvrc_sample):
    """Records and progress calls of the loop with one helper thread on the sample, batches of 5."""
    return _run(read_ilsvrc(ilsvrc_sample).samples, lite0, helpers=1)


@pytest.mark.slow
def test_helper_threads_give_the_one_thread_records(lite0, ilsvrc_sample, serial):
    samples = read_ilsvrc(ilsvrc_sample).samples
    serial, serial_progress = serial
    # channels_last: the images read into channels-last batches, as for the channels-last lite0 (the same maps)
    for helpers, workers, channels_last in ((3, 0, False), (2, 2, False), (1, 0, True), (2, 0, True), (2, 2, True)):
        threaded, threaded_progress = _run(samples, lite0, helpers=helpers, workers=workers, channels_last=channels_last)
        assert threaded == serial and [len(b) for b in serial] == [5, 5, 2]
        assert threaded_progress == serial_progress == [(5, 12), (10, 12), (12, 12)]
    # resumed runs: only images in todo get records, batches stay whole
    todo = {1, 7, 8, 11}
    part, _ = _run(samples, lite0, helpers=2, todo=todo)
    assert [r["i"] for b in part for r in b] == [1, 7, 8, 11]
    assert [r for b in part for r in b] == [r for b in serial for r in b if r["i"] in todo]


@pytest.mark.parametrize("workers", [0, 1])
@pytest.mark.parametrize("channels_last", [False, True])
def test_the_network_gets_batches_in_the_layout_asked_for(lite0, ilsvrc_sample, workers, channels_last):
    """Read on the helper threads or collated by a DataLoader worker, the batches reach the map source laid out
    as LoopOptions.channels_last says (no reorder at a channels-last model's first convolution)."""
    import torch

    source = make_map_source(lite0)
    layouts = []

    def recording(x, gt):
        layouts.append((x.is_contiguous(), x.is_contiguous(memory_format=torch.channels_last)))
        return source(x, gt)

    samples = read_ilsvrc(ilsvrc_sample).samples[:6]
    _run(samples, lite0, helpers=2, source=recording, batch_size=3, workers=workers, channels_last=channels_last)
    assert layouts == [(not channels_last, channels_last)] * 2


def _helper_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("camkit-helper")]


def test_interrupt_leaves_whole_batches_and_no_thread(lite0, ilsvrc_sample, serial):
    samples = read_ilsvrc(ilsvrc_sample).samples[:10]
    full = serial[0]
    source = make_map_source(lite0)
    calls = []

    def interrupted(x, gt):
        calls.append(len(x))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return source(x, gt)

    for helpers, workers in ((1, 0), (2, 0), (2, 1)):
        calls.clear()
        got: list[list] = []
        with pytest.raises(KeyboardInterrupt):
            run_batches(samples, batch_partition(10, 5), set(range(10)), Protocol(), interrupted,
                        lite0.preprocess.with_input_size(224), got.append, LoopOptions(workers=workers, helpers=helpers))
        # the first batch was boxed and written before the second one's forward was interrupted
        assert [[r.to_dict() for r in b] for b in got] == full[:1]
        assert not _helper_threads()


def test_error_in_box_work_reaches_the_caller(lite0, ilsvrc_sample, monkeypatch):
    samples = read_ilsvrc(ilsvrc_sample).samples[:6]
    real = loop.image_record

    def broken(protocol, maps, *args, index, **kwargs):
        if index == 4:
            raise ValueError("box work failed on image 4")
        return real(protocol, maps, *args, index=index, **kwargs)

    monkeypatch.setattr(loop, "image_record", broken)
    got: list = []
    with pytest.raises(ValueError, match="image 4"):
        run_batches(samples, batch_partition(6, 2), set(range(6)), Protocol(), make_map_source(lite0),
                    lite0.preprocess.with_input_size(224), got.append, LoopOptions(helpers=2))
    assert [r.index for b in got for r in b] == [0, 1, 2, 3]  # the batches before the failing one
    assert not _helper_threads()


def test_box_work_runs_on_the_helpers_with_single_threaded_opencv(lite0, ilsvrc_sample, monkeypatch):
    import cv2

    samples = read_ilsvrc(ilsvrc_sample).samples[:4]
    seen = []
    real = loop.image_record

    def spy(*args, **kwargs):
        seen.append((threading.current_thread().name, cv2.getNumThreads()))
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "image_record", spy)
    before = cv2.getNumThreads()
    run_batches(samples, batch_partition(4, 2), set(range(4)), Protocol(), make_map_source(lite0),
                lite0.preprocess.with_input_size(224), lambda records: None, LoopOptions(helpers=2))
    assert len(seen) == 4 and all(name.startswith("camkit-helper") and threads == 1 for name, threads in seen)
    assert cv2.getNumThreads() == before and not _helper_threads()



def test_evaluate_freezes_the_objects_alive_at_its_start_and_unfreezes_them(lite0, ilsvrc_sample, tmp_path):
    """The collector's full passes skip the model and modules during a run (gc.freeze), and afterwards the
    collector is as before; a caller's own freeze is left alone."""
    import gc

    from camkit.evaluate import evaluate

    ds = read_ilsvrc(ilsvrc_sample)
    source = make_map_source(lite0)
    during: list[int] = []

    def watched(x, gt):
        during.append(gc.get_freeze_count())
        return source(x, gt)

    assert gc.get_freeze_count() == 0
    first = evaluate(ds, lite0, limit=4, batch_size=2, map_source=watched, out_dir=tmp_path / "a", gallery_size=0)
    assert during and min(during) > 1000 and gc.get_freeze_count() == 0
    del first["run"]
    gc.freeze()  # the caller's: evaluate neither adds to it nor unfreezes it
    try:
        mine = gc.get_freeze_count()
        during.clear()
        again = evaluate(ds, lite0, limit=4, batch_size=2, map_source=watched, out_dir=tmp_path / "b", gallery_size=0)
        # the count only drops by frozen objects freed meanwhile (refcount); no unfreeze, no new freeze
        assert all(mine - 100 <= d <= mine for d in during) and mine - 100 <= gc.get_freeze_count() <= mine
    finally:
        gc.unfreeze()
    del again["run"]
    assert again == first
