import hashlib

import albumentations as A
import numpy as np
import pytest
import torch

from drgrade.data.augment import EvalTransform, TieredAugment
from drgrade.data.preprocess import crop_fundus, preprocess_fundus
from drgrade.data.sources import write_synthetic
from drgrade.data.synthetic import allocate, render_fundus


def has_erasing(pipeline) -> bool:
    return any(isinstance(t, A.CoarseDropout) for t in pipeline.transforms)


@pytest.mark.parametrize("label,minority", [(0, False), (1, True), (2, False), (3, True), (4, True)])
def test_tier_is_chosen_by_label(label, minority):
    augment = TieredAugment()
    assert has_erasing(augment.tier(label)) is minority


def test_tiers_follow_appendix_c():
    augment = TieredAugment()
    standard = {type(t).__name__: t for t in augment.standard.transforms}
    minority = {type(t).__name__: t for t in augment.minority.transforms}
    assert standard["HorizontalFlip"].p == 0.5 and minority["HorizontalFlip"].p == 0.6
    assert standard["Rotate"].limit == (-30, 30) and minority["Rotate"].limit == (-35, 35)
    assert minority["ColorJitter"].hue != (0, 0) and standard["ColorJitter"].hue == (0, 0)
    assert minority["CoarseDropout"].p == 0.4 and "CoarseDropout" not in standard


def test_augment_changes_training_images_per_call():
    image = preprocess_fundus(render_fundus(3, 128, np.random.default_rng(1))[0], 96)
    augment = TieredAugment()
    draws = [augment(image, 3) for _ in range(4)]
    assert all(d.shape == (3, 96, 96) for d in draws)
    assert not all(torch.equal(draws[0], d) for d in draws[1:])


def test_eval_transform_is_deterministic_and_normalised():
    image = render_fundus(2, 128, np.random.default_rng(0))[0]
    tensor_a = EvalTransform()(preprocess_fundus(image, 96), 2)
    tensor_b = EvalTransform()(preprocess_fundus(image, 96), 2)
    assert tensor_a.shape == (3, 96, 96) and tensor_a.dtype == torch.float32
    assert torch.equal(tensor_a, tensor_b)
    assert -2.0 < float(tensor_a.min()) < -1.5  # black surround after CLIP normalisation


def test_crop_fundus_removes_black_border():
    image = np.zeros((100, 200, 3), np.uint8)
    image[10:90, 60:140] = 120
    cropped = crop_fundus(image)
    assert cropped.shape == (80, 80, 3) and cropped.min() == 120


def test_synth_is_byte_identical_for_a_seed(tmp_path):
    def digest(folder):
        return {
            p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }

    write_synthetic(tmp_path / "a", 12, 10, 96, seed=7)
    write_synthetic(tmp_path / "b", 12, 10, 96, seed=7)
    write_synthetic(tmp_path / "c", 12, 10, 96, seed=8)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert digest(tmp_path / "a") != digest(tmp_path / "c")
    assert (tmp_path / "a" / "aptos2019" / "train.csv").is_file()
    assert (tmp_path / "a" / "messidor2" / "messidor-2.csv").is_file()
    for dataset, count in (("aptos2019", 12), ("messidor2", 10)):  # one lesion mask per image
        assert len(list((tmp_path / "a" / dataset / "lesion_masks").glob("*.png"))) == count


def test_lesion_load_grows_with_grade():
    masks = [
        np.mean([render_fundus(g, 192, np.random.default_rng([g, k]))[1].mean() for k in range(6)])
        for g in range(5)
    ]
    assert masks[0] == 0
    assert masks[1] < masks[2] < masks[3] and masks[2] < masks[4]


def test_allocation_follows_frequencies():
    counts = allocate(5406, (2822, 640, 1346, 268, 330), minimum=0)
    assert counts == [2822, 640, 1346, 268, 330]
    assert min(allocate(20, (90, 5, 3, 1, 1))) == 2


def test_loader_workers_augment_differently_and_reproducibly(synthetic):
    from drgrade.data import DRDataModule, Record

    def first_batches(workers: int):
        torch.manual_seed(0)
        dm = DRDataModule(
            roots={"aptos2019": str(synthetic / "aptos2019")},
            image_size=48,
            batch_size=4,
            num_workers=workers,
            sampler="none",
            verify_images=False,
            cache=False,
        )
        dm.setup("fit")
        first = dm.datasets["train"].records[0]
        dm.datasets["train"].records = [Record(first.path, 3, first.source, first.patient_id)] * 8
        loader = dm.train_dataloader()
        return [b["image"] for b in loader]

    run_a, run_b = first_batches(2), first_batches(2)
    assert all(torch.equal(a, b) for a, b in zip(run_a, run_b, strict=True))  # reproducible
    worker0, worker1 = run_a[0], run_a[1]  # batches 0 and 1 come from different workers
    assert not torch.equal(worker0, worker1)
