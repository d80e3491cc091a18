"""modelmine: move knowledge between models and data, and audit what leaks.

Public API: datasets (:mod:`modelmine.data`), classifiers, distillation, configs and run folders.
Methods live in :mod:`modelmine.methods` and run through ``modelmine <command>``.
"""

from .classifiers import build_classifier, evaluate, load_classifier, save_classifier, train_classifier
from .data import ImageSet, load_digits, load_image_folder, render_glyphs, save_image_folder
from .distill import kd_loss, train_student
from .errors import UserError

__all__ = [
    "ImageSet", "UserError", "build_classifier", "evaluate", "kd_loss", "load_classifier", "load_digits",
    "load_image_folder", "render_glyphs", "save_classifier", "save_image_folder", "train_classifier",
    "train_student",
]  # fmt: skip

__version__ = "0.1.0"
