"""The teacher: the classifier every method distils from or audits, and the `teacher` command.

A method takes a user's classifier file (``teacher.path``, safetensors) or trains the default one
(``TeacherConfig``: the ``cnn`` preset on the private training data) once and caches it in its run
folder as ``teacher.safetensors``; :func:`obtain_teacher` is that one path. ``modelmine teacher``
trains and tests it on its own (:func:`run_teacher`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from .classifiers import (
    ClassifierInfo,
    build_classifier,
    check_compatible,
    evaluate,
    load_classifier,
    save_classifier,
    train_classifier,
)
from .distributed import processes, resolve_device
from .errors import UserError


# --------------------------------------------------------------------------------------------
@dataclass
class TeacherConfig:
    """How the default teacher is trained (or which file to load instead)."""

    path: str | None = None  # a classifier .safetensors; None trains the default on private digits
    preset: str = "cnn"
    epochs: int = 30
    lr: float = 3e-3
    batch_size: int = 64
    weight_decay: float = 5e-4
    augment: float = 1.0
    image_size: int = 16
    seed: int = 0


@dataclass
class TeacherRunConfig:
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    data: str | None = None  # ImageFolder to train on; default: private digits (train split)
    test_data: str | None = None  # ImageFolder to test on; default: digits test split
    device: str = "auto"


def load_train_test(data: str | None, test_data: str | None, image_size: int, seed: int = 0):
    """(train, test) ImageSets: user ImageFolders, or the private digits' fixed train/test splits.

    ``seed`` only splits a user folder given without ``test_data``; the digits' splits never move
    (every method and audit must agree on which images are private members and which are test).
    """
    from .data import load_digits, load_image_folder, split_holdout

    if data is None:
        return load_digits("train", image_size), load_digits("test", image_size)
    train = load_image_folder(data, size=image_size)
    if test_data is not None:
        test = load_image_folder(
            test_data, size=image_size, channels=train.images.shape[1], class_names=train.class_names
        )
        return train, test
    return split_holdout(train, seed)


def load_test_set(test_data: str | None, info: ClassifierInfo, user_teacher: bool = False):
    """The real test set a distilled student is scored on: an ImageFolder or the digits' test split.

    ``test_data`` ``None`` means the private digits' test split; it must fit the classifier
    ``info`` (one-line ``UserError`` otherwise, pointing a user-supplied teacher to ``--data``).
    """
    from .data import load_digits, load_image_folder

    if test_data is not None:
        test = load_image_folder(
            test_data, size=info.image_size, channels=info.in_channels, class_names=info.class_names
        )
    else:
        test = load_digits("test", info.image_size)
        try:
            check_compatible(info, test.image_shape, test.num_classes, "the default digits test set")
        except UserError as e:
            if user_teacher:
                raise UserError(
                    f"{e}; pass --test-data with an ImageFolder test set for this teacher"
                ) from None
            raise
    check_compatible(info, test.image_shape, test.num_classes, "test data")
    return test


def obtain_teacher(cfg: TeacherConfig, out_dir: Path, train_set=None, device: str | torch.device = "cpu"):
    """The teacher a method uses: ``cfg.path`` if given, else trained (once; cached in ``out_dir``).

    Returns ``(model, info)``. Training uses ``train_set`` or the private digits' train split.
    """
    if cfg.path is not None:
        return load_classifier(cfg.path, cfg.preset)
    cached = Path(out_dir) / "teacher.safetensors"
    if cached.exists():
        return load_classifier(cached)
    from .data import load_digits

    train = train_set if train_set is not None else load_digits("train", cfg.image_size)
    c = train.images.shape[1]
    model = build_classifier(cfg.preset, train.num_classes, c, cfg.image_size, seed=cfg.seed)
    train_classifier(
        model, train.images, train.labels, epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size,
        weight_decay=cfg.weight_decay, augment=cfg.augment, seed=cfg.seed, device=device,
        progress=True, desc="teacher",
    )  # fmt: skip
    info = ClassifierInfo(cfg.preset, train.num_classes, c, cfg.image_size, list(train.class_names))
    save_classifier(cached, model, info)
    return model.cpu(), info


def obtain_frozen_teacher(
    cfg: TeacherConfig, out_dir: Path, device: str | torch.device = "cpu"
) -> tuple[nn.Module, ClassifierInfo]:
    """:func:`obtain_teacher` (the default trained on the private digits' train split), on
    ``device``, in eval mode, with gradients off for its parameters: what synthesis differentiates."""
    teacher, info = obtain_teacher(cfg, out_dir, None, device)
    teacher = teacher.to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher, info


def teacher_and_test_set(
    cfg: TeacherConfig, test_data: str | None, out_dir: Path, device: str | torch.device = "cpu"
):
    """What a data-free method starts from: ``(teacher, info, test)``, the frozen teacher of
    :func:`obtain_frozen_teacher` (trained once, on the main process of a launch, the others load it)
    and the real test set its student is scored on (:func:`load_test_set`)."""
    with processes().main_first():
        teacher, info = obtain_frozen_teacher(cfg, out_dir, device)
    return teacher, info, load_test_set(test_data, info, user_teacher=cfg.path is not None)


def run_teacher(cfg: TeacherRunConfig, out: Path) -> dict:
    """`modelmine teacher`: train the default teacher; metrics ``teacher_acc``, ``train_seconds``."""
    from .runs import Run

    run = Run(out, cfg)
    device = resolve_device(cfg.device)
    train, test = load_train_test(cfg.data, cfg.test_data, cfg.teacher.image_size, cfg.teacher.seed)
    t0 = time.time()
    model, info = obtain_teacher(cfg.teacher, run.dir, train, device)
    check_compatible(info, tuple(test.images.shape[1:]), test.num_classes, "test data")
    seconds = time.time() - t0
    acc = evaluate(model, test.images, test.labels, device=device)
    prev = run.metrics().get("train_seconds")
    return run.log_metrics(
        teacher_acc=acc, train_seconds=prev if prev is not None else seconds, num_train=len(train)
    )
