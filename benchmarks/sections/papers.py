"""Paper vs here: for every headline number of the README, whether it is the paper's quantity."""

from __future__ import annotations

from _render import Results, para, table

# (headline, the paper's protocol, ours, same quantity?, why they differ)
ROWS = [
    ("`teacher` accuracy", "none (our teacher)", "test accuracy of the default `cnn`", "-", ""),
    ("`pretrain` `cas_public`, `cas_private`", "CAS (Ravuri & Vinyals 2019): a real-data "
     "classifier's accuracy on generated images", "the same, on glyphs and on the private digits",
     "yes", ""),
    ("`cake` `student_acc`", "student test accuracy on MNIST, 256k samples, 256 steps, the teacher's "
     "architecture", "student test accuracy on digits / mnist5k, 4.8k samples, the teacher's architecture",
     "yes", "smaller budget (CPU)"),
    ("`tckr` `student_acc`", "accuracy on the real test set of a student trained on synthetic data only",
     "the same", "yes", ""),
    ("`tckr` `teacher_auc`, `student_auc`", "best AUC over 12 LiRA variants, 256 shadows, 1,000 members "
     "and 1,000 non-members", "one variant (online, fixed variance), 16 shadows, every private image "
     "against the held-out ones", "no", "one fixed attack, not the best of several"),
    ("`tckr` `teacher_auc_paper`, `student_auc_paper`", "as above", "best of our 4 LiRA variants, 16 "
     "shadows, the held-out non-members and as many members", "partly", "fewer variants and shadows (CPU)"),
    ("`tckr` `teacher_aop`, `student_aop`", "accuracy / (2 AUC)^2 (reproduces the official tables)",
     "the same, on `*_auc_paper`", "partly", "on our AUC above"),
    ("`ddis` `student_acc`", "student test accuracy", "the same", "yes", ""),
    ("`ddis` `fid`, `inception_score`", "Inception-v3 features against the real data",
     "a `cnn_small` fitted to half the real images, against the other half", "no",
     "Inception weights are a download"),
    ("`extract` `success_rate`", "SSCD similarity >= 0.7, 500 generations",
     "centred pixel correlation >= 0.95, 500 generations by default, 200 in the benchmark (`features=sscd:<file>`:"
     " the paper's)", "no",
     "SSCD is a download"),
    ("`extract` `avg_similarity`", "mean best SSCD similarity", "mean best pixel correlation", "no",
     "SSCD is a download"),
    ("`audit membership` `lira_auc`", "LiRA AUC, 256 shadows, per-example variance (Carlini et al.)",
     "LiRA online AUC, 16 models, fixed variance (the paper's choice below 64)", "yes", "fewer models"),
    ("`audit membership` `rmia_auc`", "RMIA AUC (Zarifzadeh et al.)", "the same, online, same models",
     "yes", ""),
]  # fmt: skip


def section_papers(r: Results) -> list[str] | None:
    lines = ["## Paper vs here", ""]
    lines += para(
        "Every headline number of the README beside the quantity its paper reports: the paper's",
        "protocol, ours, and whether they measure the same thing. Where they do not, the paper's",
        "number is for orientation only.",
    )
    return lines + table(["headline", "paper's protocol", "ours", "same", "why not"], [list(r) for r in ROWS])
