import pytest
import torch
import torch.nn as nn

from modelmine.classifiers import (
    ClassifierInfo,
    build_classifier,
    check_compatible,
    evaluate,
    has_batchnorm,
    load_classifier,
    penultimate,
    predict_logits,
    save_classifier,
    train_classifier,
)
from modelmine.errors import UserError


@pytest.mark.parametrize("preset", ["cnn", "cnn_small", "resnet", "mlp"])
def test_presets_shapes(preset):
    m = build_classifier(preset, num_classes=7, in_channels=3, image_size=12).eval()
    x = torch.rand(4, 3, 12, 12)
    assert m(x).shape == (4, 7)
    assert penultimate(m, x).shape[0] == 4
    assert has_batchnorm(m) == (preset != "mlp")


def test_cake_cnn_preset():
    """The official CAKE MNIST Cnn: no BatchNorm, its parameter count, a 1x1 map at 28 and 21 pixels."""
    m = build_classifier("cake_cnn", num_classes=10, in_channels=1, image_size=28).eval()
    assert not has_batchnorm(m)
    # conv 1->32 (3x3), 32->64 (4x4), 64->64 (3x3) twice, linear 64->10, with biases
    assert sum(p.numel() for p in m.parameters()) == 320 + 32832 + 36928 * 2 + 650
    assert m(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert build_classifier("cake_cnn", 3, 3, 21)(torch.rand(2, 3, 21, 21)).shape == (2, 3)
    with pytest.raises(UserError, match="21 pixels"):
        build_classifier("cake_cnn", 10, 1, 20)


def test_unknown_preset():
    with pytest.raises(UserError, match="unknown classifier preset"):
        build_classifier("vgg99")


def test_penultimate_of_any_module():
    m = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    assert penultimate(m, torch.rand(5, 1, 2, 2)).shape == (5, 3)


def test_save_load_round_trip(tmp_path):
    m = build_classifier("cnn_small", 3, 1, 8).eval()
    info = ClassifierInfo("cnn_small", 3, 1, 8, ["a", "b", "c"])
    save_classifier(tmp_path / "m.safetensors", m, info)
    m2, info2 = load_classifier(tmp_path / "m.safetensors")
    x = torch.rand(2, 1, 8, 8)
    assert info2 == info and torch.equal(m(x), m2(x))


def test_load_refuses_pickles_nan_and_missing(tmp_path):
    torch.save({"w": torch.ones(1)}, tmp_path / "m.pt")
    with pytest.raises(UserError, match="pickle checkpoints are not loaded"):
        load_classifier(tmp_path / "m.pt")
    with pytest.raises(UserError, match="not found"):
        load_classifier(tmp_path / "missing.safetensors")
    m = build_classifier("mlp", 2, 1, 4)
    with torch.no_grad():
        m.head.weight[0, 0] = float("nan")
    save_classifier(tmp_path / "nan.safetensors", m, ClassifierInfo("mlp", 2, 1, 4, ["a", "b"]))
    with pytest.raises(UserError, match="NaN"):
        load_classifier(tmp_path / "nan.safetensors")


def test_training_learns_a_separable_problem():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(128, 1, 8, 8, generator=g) * 0.3
    y = torch.arange(128) % 2
    x[y == 1, :, :4] += 0.6  # class 1 is bright on top
    m = build_classifier("cnn_small", 2, 1, 8)
    train_classifier(m, x, y, epochs=8, lr=1e-2, batch_size=32, augment=0.0)
    assert evaluate(m, x, y) > 0.95
    assert predict_logits(m, x[:3]).shape == (3, 2)


def test_check_compatible_errors():
    info = ClassifierInfo("cnn", 10, 1, 16, [str(i) for i in range(10)])
    check_compatible(info, (1, 16, 16), 10, "data")
    with pytest.raises(UserError, match="3 classes but the classifier outputs 10"):
        check_compatible(info, (1, 16, 16), 3, "data")
    with pytest.raises(UserError, match="3-channel"):
        check_compatible(info, (3, 16, 16), 10, "data")
    with pytest.raises(UserError, match="8x8 but the classifier expects 16x16"):
        check_compatible(info, (1, 8, 8), 10, "data")


def test_teacher_seed_does_not_move_the_private_splits():
    from modelmine.data import load_digits
    from modelmine.teacher import load_train_test

    for seed in (0, 3):
        train, test = load_train_test("digits", None, 16, seed)
        assert torch.equal(train.images, load_digits("train").images)
        assert torch.equal(test.images, load_digits("test").images)


def test_faint_noise_touches_half_the_batch_within_its_amplitude():
    from modelmine.classifiers import faint_noise

    x = torch.zeros(400, 1, 6, 6)
    y = faint_noise(x, 0.1, torch.Generator().manual_seed(0))
    touched = (y > 0).flatten(1).any(1).float().mean()
    assert 0.4 < touched < 0.6 and y.max() <= 0.1 and y.min() >= 0
    assert torch.equal(y, faint_noise(x, 0.1, torch.Generator().manual_seed(0)))  # seeded
    assert faint_noise(torch.ones(4, 1, 3, 3), 1.0).max() <= 1  # clamped to the image range
    with pytest.raises(UserError, match="noise"):
        train_classifier(
            build_classifier("mlp", 2, 1, 4), torch.rand(8, 1, 4, 4), torch.arange(8) % 2, noise=2.0
        )
