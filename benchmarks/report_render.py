"""Does a browser show the audit report's figures? Headless Chromium, no network.

    python benchmarks/report_render.py [--report benchmarks/out/audit_run/report.html]

Opens ``report.html`` (written by ``modelmine audit run``; default: the one ``audit_run_bench.py``
leaves) in headless Chromium (Debian's ``chromium`` package) with every host name unresolvable and
a dead proxy, so a report that needed the network would lose those parts, and screenshots it. It
screenshots the same page again with every inline image removed, and counts the pixels that differ
inside the page: the figures are shown when that count is large. Writes
``results/report_render.json`` (Chromium's version, the number of inline images, the pixels that
differ, the page's external references) and ``results/report_render.png`` (the screenshot, halved).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from _results import machine_info, write_results

RESULTS = Path(__file__).parent / "results"
OFFLINE = ["--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9", "--no-proxy-server=false"]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    raise SystemExit("no Chromium found: apt-get install chromium")


def screenshot(browser: str, page: Path, png: Path, width: int = 1000, height: int = 3000) -> np.ndarray:
    """The page rendered headless at ``width x height``, as an RGB array."""
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *OFFLINE,
           f"--window-size={width},{height}", f"--screenshot={png}", page.resolve().as_uri()]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    return np.asarray(Image.open(png).convert("RGB"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--report", default="benchmarks/out/audit_run/report.html")
    args = ap.parse_args()
    report = Path(args.report)
    html = report.read_text()
    browser = chromium()
    version = subprocess.run([browser, "--version"], capture_output=True, text=True).stdout.strip()
    external = sorted(set(re.findall(r'(?:src|href)="((?!data:)[^"#]+)"', html)))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bare = tmp / "bare.html"
        bare.write_text(re.sub(r'<img [^>]*src="data:image/png;base64,[^"]*"[^>]*>', "", html))
        page = tmp / "report.html"
        page.write_text(html)
        full = screenshot(browser, page, tmp / "full.png")
        without = screenshot(browser, bare, tmp / "bare.png")
        Image.fromarray(full[::2, ::2]).save(RESULTS / "report_render.png", optimize=True)
    differ = int((np.abs(full.astype(int) - without.astype(int)).sum(-1) > 30).sum())
    images = html.count('src="data:image/png;base64,')
    coloured = int(((full.max(-1).astype(int) - full.min(-1)) > 60).sum())  # the ROC curves' colours
    write_results(
        RESULTS / "report_render.json",
        {
            "report": str(report),
            "browser": version,
            "inline_images": images,
            "external_references": external,
            "pixels_differing_without_images": differ,
            "coloured_pixels": coloured,
            "screenshot_pixels": int(full.shape[0] * full.shape[1]),
            "figures_shown": bool(images and differ > 10_000 and not external),
            "network": "blocked (host names unresolvable, dead proxy)",
            **machine_info(),
        },
    )
    print(f"{images} inline images; {differ} pixels differ without them; external references: {external}")


if __name__ == "__main__":
    main()
