import numpy as np
import pytest
import torch
from PIL import Image

from modelmine.data import (
    ImageSet,
    digits_split_indices,
    load_digits,
    load_image_folder,
    load_soft_labels,
    render_glyphs,
    save_image_folder,
)
from modelmine.errors import UserError


def test_digit_splits_are_fixed_disjoint_and_cover_everything():
    a, b = digits_split_indices(0), digits_split_indices(0)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    idx = np.concatenate(list(a.values()))
    assert len(idx) == len(set(idx.tolist())) == 1797
    tr, he, te = (load_digits(s) for s in ("train", "heldout", "test"))
    assert (len(tr), len(he), len(te)) == (1077, 360, 360)
    assert tr.images.shape[1:] == (1, 16, 16) and 0 <= tr.images.min() and tr.images.max() <= 1
    assert load_digits("test", size=8).images.shape[1:] == (1, 8, 8)
    with pytest.raises(UserError):
        load_digits("bogus")


def test_glyphs_are_seeded_balanced_and_in_range():
    g1, g2 = render_glyphs(40, 16, seed=3), render_glyphs(40, 16, seed=3)
    assert torch.equal(g1.images, g2.images) and torch.equal(g1.labels, g2.labels)
    assert not torch.equal(g1.images, render_glyphs(40, 16, seed=4).images)
    assert g1.images.shape == (40, 1, 16, 16)
    assert torch.bincount(g1.labels, minlength=10).tolist() == [4] * 10
    assert g1.images.min() >= 0 and g1.images.max() <= 1 and g1.images.amax((1, 2, 3)).min() > 0.5
    assert render_glyphs(5, 24, seed=0, labels=torch.full((5,), 7)).labels.tolist() == [7] * 5
    assert render_glyphs(5, 24, seed=0).images.shape == (5, 1, 24, 24)


def test_image_folder_round_trip_with_captions_and_soft_labels(tmp_path, tiny_folder):
    root, data = tiny_folder
    back = load_image_folder(root)
    assert back.class_names == ["cat", "dog", "owl"]
    order = torch.argsort(data.labels, stable=True)  # folders are read class by class
    assert torch.allclose(back.images, data.images[order], atol=1 / 255)
    assert back.captions == [data.captions[i] for i in order.tolist()]
    # chunked writes append metadata and soft labels
    out = tmp_path / "synth"
    probs = torch.softmax(torch.randn(12, 3), 1)
    save_image_folder(out, data.subset(range(6)), soft_labels=probs[:6])
    save_image_folder(out, data.subset(range(6, 12)), soft_labels=probs[6:], start=6)
    synth = load_image_folder(out)
    assert len(synth) == 12 and len(synth.captions) == 12
    soft = load_soft_labels(out, synth.files)
    expected = {f"{data.class_names[y]}/{i:06d}.png": probs[i] for i, y in enumerate(data.labels.tolist())}
    assert torch.allclose(soft, torch.stack([expected[f] for f in synth.files]))


def test_image_folder_resizes_and_checks_classes(tiny_folder):
    root, _ = tiny_folder
    assert load_image_folder(root, size=16).images.shape[1:] == (1, 16, 16)
    assert load_image_folder(root, channels=3).images.shape[1] == 3
    with pytest.raises(UserError, match="missing folder"):
        load_image_folder(root, class_names=["cat", "dog", "owl", "eel"])
    with pytest.raises(UserError, match="unexpected folder"):
        load_image_folder(root, class_names=["cat", "dog"])


def _one_line(e):
    assert "\n" not in str(e.value)


def test_bad_folders_are_one_line_errors(tmp_path, tiny_folder):
    root, _ = tiny_folder
    with pytest.raises(UserError, match="not found") as e:
        load_image_folder(tmp_path / "nope")
    _one_line(e)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no class sub-folders") as e:
        load_image_folder(tmp_path / "empty")
    _one_line(e)
    (root / "eel").mkdir()
    with pytest.raises(UserError, match="holds no images"):
        load_image_folder(root)
    (root / "eel").rmdir()
    Image.fromarray(np.zeros((9, 9), np.uint8)).save(root / "cat" / "odd.png")
    with pytest.raises(UserError, match="image size mismatch") as e:
        load_image_folder(root)
    _one_line(e)
    (root / "cat" / "odd.png").unlink()
    good = (root / "dog").iterdir().__next__().read_bytes()
    (root / "dog" / "trunc.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(UserError, match="corrupt or unreadable image") as e:
        load_image_folder(root)
    _one_line(e)


def test_subset_keeps_captions():
    s = ImageSet(torch.zeros(3, 1, 2, 2), torch.tensor([0, 1, 0]), ["a", "b"], ["x", "y", "z"])
    sub = s.subset([2, 1])
    assert sub.captions == ["z", "y"] and sub.labels.tolist() == [0, 1]


def test_member_split_round_trip(tiny_folder):
    from modelmine.data import describe_members, load_described, load_image_folder, split_holdout

    root, _ = tiny_folder
    rest, held = split_holdout(load_image_folder(root), seed=3)
    assert len(held) == 2 and len(rest) == 10  # 20% of 12, at least one
    back = load_described(describe_members(held), size=8)
    assert torch.equal(back.images, held.images) and torch.equal(back.labels, held.labels)
    digits = load_digits("heldout", 8)
    again = load_described(describe_members(digits), size=8)
    assert torch.equal(again.images, digits.images) and again.files == digits.files


def test_resolve_gives_every_command_the_same_splits(tmp_path, tiny_folder):
    from modelmine.data import load_digits, population, resolve, split_holdout

    root, _ = tiny_folder
    built_in = resolve("digits", 8)
    for split in ("train", "heldout", "test"):
        assert torch.equal(getattr(built_in, split).images, load_digits(split, 8).images)
    assert resolve("digits", 8, 3).train.images.shape[1] == 3  # grey repeated for an RGB model
    folder = resolve(str(root), seed=1)
    rest, held = split_holdout(load_image_folder(root), seed=1)
    assert folder.train.files == rest.files and folder.test.files == held.files == folder.heldout.files
    pop, member = folder.population()
    assert (
        torch.equal(pop.images, torch.cat([rest.images, held.images]))
        and member.tolist() == [True] * 10 + [False] * 2
    )
    assert torch.equal(population("digits", 8)[1], built_in.population()[1])
    with pytest.raises(UserError, match="--members"):
        population(str(root), 8)


def test_patches_is_a_fixed_colour_dataset_with_disjoint_splits():
    from modelmine.data import dataset_channels, dataset_num_classes, resolve
    from modelmine.patches import CLASSES, SPLITS

    s = resolve("patches")
    assert s.train.images.shape == (SPLITS["train"] * 6, 3, 16, 16) and s.train.class_names == list(CLASSES)
    assert len(s.heldout) == len(s.test) == SPLITS["test"] * 6
    files = [set(d.files) for d in (s.train, s.heldout, s.test)]
    assert not (files[0] & files[1] or files[0] & files[2] or files[1] & files[2])
    assert torch.equal(resolve("patches", seed=5).train.images, s.train.images)  # a run's seed never moves it
    assert (s.train.images.amax(1) - s.train.images.amin(1)).mean() > 0.05  # colour, not grey
    assert resolve("patches", channels=1).train.images.shape[1] == 1
    assert dataset_channels("patches") == 3 and dataset_channels("digits") == 1
    assert dataset_num_classes("patches") == 6


def test_embedded_resolves_to_the_model_that_makes_the_datas_channels():
    from modelmine.diffusion.generator import embedded_for, embedded_weights

    assert embedded_for("embedded", 1) == "embedded" and embedded_for("embedded", 3) == "embedded-rgb"
    assert embedded_for("my/sd-folder", 3) == "my/sd-folder"
    assert embedded_weights("embedded-rgb").name == "embedded_generator_rgb.safetensors"
    assert embedded_weights("path/to/sd") is None
