"""Screenshots of the documentation site and the asv dashboard, taken in
headless Chromium (offline: every host but 127.0.0.1 unresolvable).

    python -m sphinx -b html docs docs/_build/html
    python bench/publish_dashboard.py
    python bench/screenshots.py --docs docs/_build/html --dashboard .asv/html --out shots/

writes landing.png, api.png, tutorial.png (docs) and dashboard.png (the
classic-epoch graph; the performance page shows docs/_static/dashboard.png,
made this way) and prints any JavaScript error a page raised.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chromium import Chromium, Server  # noqa: E402

DOCS_PAGES = {"landing.png": "index.html", "api.png": "api/fastnn.Network.html",
              "tutorial.png": "auto_examples/from_scratch.html"}
EPOCH_GRAPH = "#benchmarks.TimeEpoch.time_epoch"


def shoot_docs(html, out, browser):
    errors = {}
    with Server(html) as server:
        for name, page in DOCS_PAGES.items():
            if not (Path(html) / page).is_file():
                raise SystemExit(f"--docs {html}: no {page} (build the docs first)")
            browser.errors.clear()
            browser.goto(server.url + page)
            browser.screenshot(out / name)
            errors[page] = list(browser.errors)
    return errors


def shoot_dashboard(html, path, browser):
    with Server(html) as server:
        browser.errors.clear()
        browser.goto(server.url + EPOCH_GRAPH)
        browser.wait_for("window.$ && $('#main-graph').data('plot')")
        browser.screenshot(path)
        return {EPOCH_GRAPH: list(browser.errors)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", help="a built documentation site (its index.html's folder)")
    parser.add_argument("--dashboard", help="a published asv dashboard (.asv/html)")
    parser.add_argument("--out", default=".", help="where to write the PNG files")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=900)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    errors = {}
    with Chromium(width=args.width, height=args.height) as browser:
        if args.docs:
            errors.update(shoot_docs(args.docs, out, browser))
        if args.dashboard:
            errors.update(shoot_dashboard(args.dashboard, out / "dashboard.png", browser))
    for page, errs in errors.items():
        print(f"{page}: {'no JavaScript errors' if not errs else errs}")
    return 1 if any(errors.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
