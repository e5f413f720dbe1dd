"""Tests for hpo.engine.data.imagefolder and hpo.engine.data.streamed: layout checks, class mapping,
exact decoding, the memory budget, and streamed batches equal to the in-memory ones."""

from __future__ import annotations

import pytest
import torch
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2 import functional as TF

from hpo.engine.data import imagefolder, loading
from hpo.engine.data.imagefolder import decode_images, memory_budget, scan
from hpo.engine.data.splits import prepared_splits
from hpo.engine.data.streamed import streamed_splits
from hpo.engine.spec import TrainSpec
from hpo.engine.train import train
from hpo.errors import ConfigError, DataError
from tests.engine._fakedata import write_image_folder

# torchvision 0.29 deprecates its image decoders in favour of TorchCodec (one warning a file).
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")

CLASSES = {"dog": 3, "cat": 2, "bird": 4}  # written out of order: classes are sorted


@pytest.fixture(autouse=True)
def fresh_caches():
    # Folders are rewritten between tests at the same tmp paths only by accident, but the
    # per-process caches are keyed by path: start each test empty.
    imagefolder._scan.cache_clear()
    imagefolder._load.cache_clear()
    prepared_splits.cache_clear()
    yield


def name_of(root) -> str:
    return f"imagefolder:{root}"


def test_classes_are_the_sorted_train_folders_and_pixels_read_back_exactly(tmp_path):
    written = write_image_folder(tmp_path, CLASSES, size=(8, 8))
    index = scan(name_of(tmp_path), tmp_path)
    assert index.classes == ("bird", "cat", "dog") and index.val is None
    expected = [(p, img, index.classes.index(c)) for p, img, c in written["train"]]
    expected.sort(key=lambda e: (e[2], e[0].name))  # by class index, then file name
    assert list(index.train.paths) == [p for p, _, _ in expected]
    assert index.train.labels.tolist() == [label for _, _, label in expected]
    raw = imagefolder.load_in_memory(index, image_size=8, channels=3)
    assert raw.train_images.dtype == torch.uint8 and raw.train_images.shape == (9, 3, 8, 8)
    assert torch.equal(raw.train_images, torch.stack([img for _, img, _ in expected]))
    assert len(raw.test_labels) == 9 and raw.classes == ("bird", "cat", "dog")


def test_images_are_resized_to_the_spec_size_and_decoded_gray_for_one_channel(tmp_path):
    written = write_image_folder(tmp_path, {"a": 1, "b": 1}, size=(20, 12), fmt="jpg")
    path = written["train"][0][0]
    got = decode_images([path], image_size=16, channels=3)
    ref = TF.resize(decode_image(str(path), mode=ImageReadMode.RGB), [16, 16], antialias=True)
    assert got.shape == (1, 3, 16, 16) and torch.equal(got[0], ref)
    gray = decode_images([path], image_size=16, channels=1)
    assert gray.shape == (1, 1, 16, 16) and gray.dtype == torch.uint8


def test_val_folder_is_the_validation_set(tmp_path):
    write_image_folder(tmp_path, {"a": 4, "b": 4}, splits=("train", "val", "test"))
    spec = TrainSpec(dataset=name_of(tmp_path), val_size=50, image_size=8, train_subset=5)
    splits = loading.load_splits(spec, None, torch.float32, torch.device("cpu"))
    assert len(splits.train.y) == 5 and len(splits.val.y) == 8 and splits.num_classes == 2
    raw = loading.load_raw(spec.dataset, image_size=8)
    assert raw.val_images is not None
    expected = loading.data_mod.prepare_images(raw.val_images, dataset=spec.dataset,
                                               normalize=True, dtype=torch.float32)
    assert torch.equal(splits.val.x, expected)


@pytest.mark.parametrize("settings, match", [
    ({"val_size": 9}, r"val_size=9 does not fit 9 training images; allowed 1 to 8"),
    ({"val_size": 2, "train_subset": 8}, r"train_subset=8 with val_size=2.*1 to 7"),
])
def test_settings_larger_than_the_folder_are_config_errors(tmp_path, settings, match):
    write_image_folder(tmp_path, CLASSES)
    spec = TrainSpec(dataset=name_of(tmp_path), image_size=8, **settings)
    with pytest.raises(ConfigError, match=match):
        loading.load_splits(spec, None, torch.float32, torch.device("cpu"))


def _layout(tmp_path, case):
    if case == "missing":
        return tmp_path / "nowhere"
    if case == "no-train":
        write_image_folder(tmp_path, {"a": 1}, splits=("test",))
    elif case == "no-test":
        write_image_folder(tmp_path, {"a": 1}, splits=("train",))
    elif case == "mismatch":
        write_image_folder(tmp_path, {"a": 1, "b": 1}, splits=("train",))
        write_image_folder(tmp_path, {"a": 1, "c": 1}, splits=("test",))
    elif case == "empty-class":
        write_image_folder(tmp_path, {"a": 1})
        (tmp_path / "train" / "b").mkdir()
        (tmp_path / "test" / "b").mkdir()
        (tmp_path / "train" / "b" / "notes.txt").write_text("not an image")
    elif case == "no-classes":
        (tmp_path / "train").mkdir()
        (tmp_path / "test").mkdir()
        (tmp_path / "train" / "x.png").write_bytes(b"")
    elif case == "empty-test":
        write_image_folder(tmp_path, {"a": 1}, splits=("train",))
        (tmp_path / "test" / "a").mkdir(parents=True)
    return tmp_path


@pytest.mark.parametrize("case, match", [
    ("missing", r"does not exist; give the path of a folder laid out as PATH/train/<class>"),
    ("no-train", r"has no train/ folder; lay it out as PATH/train/<class>/<image>"),
    ("no-test", r"has no test/ folder"),
    ("mismatch", r"test/ has different classes from train/ \(missing \['b'\], extra \['c'\]\)"),
    ("empty-class", r"train/b' holds no images \(.jpg, .jpeg, .png, .webp\); add images"),
    ("no-classes", r"has no class folders"),
    ("empty-test", r"test' holds no images"),
])
def test_bad_layouts_are_one_line_config_errors(tmp_path, case, match):
    root = _layout(tmp_path, case)
    with pytest.raises(ConfigError, match=match) as info:
        loading.verify_dataset(name_of(root))
    assert "\n" not in str(info.value) and str(root) in str(info.value)


def test_an_undecodable_image_is_a_data_error_naming_the_file(tmp_path):
    write_image_folder(tmp_path, {"a": 2})
    bad = tmp_path / "train" / "a" / "999.png"
    bad.write_bytes(b"\x89PNG not really")
    index = scan(name_of(tmp_path), tmp_path)
    with pytest.raises(DataError, match=r"999.png: cannot decode the image.*replace or remove"):
        imagefolder.load_in_memory(index, image_size=8, channels=3)


def test_memory_budget_default_setting_and_bad_values(monkeypatch):
    monkeypatch.delenv(imagefolder.MEMORY_ENV, raising=False)
    assert memory_budget() == 4 * 2**30
    monkeypatch.setenv(imagefolder.MEMORY_ENV, "0.5")
    assert memory_budget() == 2**29
    for bad in ("lots", "-1", "nan"):
        monkeypatch.setenv(imagefolder.MEMORY_ENV, bad)
        with pytest.raises(ConfigError, match=rf"Invalid HPO_IMAGE_MEMORY_GIB='{bad}'.*>= 0"):
            memory_budget()


def test_the_budget_picks_memory_or_disk(tmp_path, monkeypatch):
    write_image_folder(tmp_path, CLASSES)  # 18 images; at 8x8x3: 3456 values
    spec = TrainSpec(dataset=name_of(tmp_path), image_size=8, val_size=3)
    cpu = torch.device("cpu")
    monkeypatch.setenv(imagefolder.MEMORY_ENV, str(3456 * 5 / 2**30))  # uint8 + float32 copy
    assert not loading.load_splits(spec, None, torch.float32, cpu).streamed
    monkeypatch.setenv(imagefolder.MEMORY_ENV, str((3456 * 5 - 1) / 2**30))
    assert loading.load_splits(spec, None, torch.float32, cpu).streamed


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_streamed_batches_and_rows_equal_the_in_memory_ones(tmp_path, dtype):
    write_image_folder(tmp_path, CLASSES, size=(11, 7), fmt="jpg")
    name, cpu = name_of(tmp_path), torch.device("cpu")
    index = scan(name, tmp_path)
    raw = imagefolder.load_in_memory(index, image_size=10, channels=3)
    memory = prepared_splits(raw, 3, 5, 7, True, dtype, cpu)
    streamed = streamed_splits(index, image_size=10, channels=3, val_size=3, train_subset=5,
                               split_seed=7, normalize=True, dtype=dtype, device=cpu)
    for mem, disk in zip(memory, streamed):
        assert torch.equal(mem.y, disk.y)
        assert torch.equal(mem.rows(0, len(mem.y)), disk.rows(0, len(disk.y)))
        assert disk.x.shape == (0, 3, 10, 10) and disk.x.dtype == dtype
    order = torch.tensor([4, 0, 2, 1, 3])
    mem_batches = [(x.clone(), y.clone()) for x, y in memory[0].batches(2).epoch(order)]
    disk_batches = list(streamed[0].batches(2).epoch(order))
    assert [len(y) for _, y in disk_batches] == [2, 2, 1]
    for (mx, my), (dx, dy) in zip(mem_batches, disk_batches, strict=True):
        assert torch.equal(mx, dx) and torch.equal(my, dy)


def test_a_run_streamed_from_disk_equals_the_in_memory_run(tmp_path, monkeypatch):
    write_image_folder(tmp_path, {"a": 6, "b": 6, "c": 6}, size=(12, 12))
    spec = TrainSpec(model="fc", dataset=name_of(tmp_path), depth=1, width=8, image_size=8,
                     val_size=4, batch_size=5, epochs=2)
    monkeypatch.delenv(imagefolder.MEMORY_ENV, raising=False)
    memory = train(spec)
    monkeypatch.setenv(imagefolder.MEMORY_ENV, "0")
    disk = train(spec)
    assert memory.params_sha256 == disk.params_sha256
    assert memory.val_accuracy == disk.val_accuracy and memory.test_accuracy == disk.test_accuracy
    assert memory.train_samples == 14
