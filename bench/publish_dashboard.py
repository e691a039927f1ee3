"""Publish the asv dashboard so that it works without internet access.

    python bench/publish_dashboard.py [--html-dir DIR]

runs ``asv publish`` over ``bench/results`` (asv.conf.json) and then serves
the page's script libraries with it: asv's ``index.html`` loads jQuery, flot
and bootstrap from CDNs, and a browser that cannot reach them shows only
asv's "external dependencies failed to load" page. The npm releases kept in
``bench/dashboard/`` (with their licences) are copied to ``DIR/vendor`` and
each CDN tag is pointed at its copy. A CDN tag this script does not know (a
newer asv) is an error naming the URL, not a dashboard that breaks offline.
"""
import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT / "bench" / "dashboard"

# The end of each CDN URL in asv's index.html -> the vendored file.
SCRIPTS = {
    "/jquery-3.3.1.min.js": "js/jquery-3.3.1.min.js",
    "/flot/0.8.3/jquery.flot.min.js": "js/jquery.flot-0.8.3.js",
    "/flot/0.8.3/jquery.flot.time.min.js": "js/jquery.flot.time-0.8.3.js",
    "/flot/0.8.3/jquery.flot.selection.min.js": "js/jquery.flot.selection-0.8.3.js",
    "/flot/0.8.3/jquery.flot.categories.min.js": "js/jquery.flot.categories-0.8.3.js",
    "/jquery.flot.orderBars.js": "js/jquery.flot.orderBars-1.0.0.js",
    "/stupidtable.min.js": "js/stupidtable-1.1.3.min.js",
    "/md5.min.js": "js/md5-2.19.0.min.js",
    "/bootstrap.min.js": "js/bootstrap-3.1.1.min.js",
    "/bootstrap.min.css": "css/bootstrap.min.css",
}
TAG = re.compile(r'<(script|link)\b[^>]*?(?:src|href)="(https?://[^"]+)"[^>]*>', re.S)


def localise(html):
    """Return ``html`` with every CDN script and stylesheet tag pointing
    into ``vendor/``; raise ValueError naming a URL with no vendored copy."""
    def swap(match):
        kind, url = match.group(1), match.group(2)
        if kind == "link" and "stylesheet" not in match.group(0):
            return match.group(0)  # a feed or an icon, not a dependency
        for tail, local in SCRIPTS.items():
            if url.endswith(tail):
                if kind == "script":
                    return f'<script src="vendor/{local}" onerror="js_load_failure()">'
                return f'<link rel="stylesheet" href="vendor/{local}">'
        raise ValueError(f"index.html loads {url}, which bench/dashboard/ does not hold: "
                         "vendor it (npm pack) and add it to SCRIPTS in "
                         "bench/publish_dashboard.py")
    return TAG.sub(swap, html)


def drop_unmeasured(out):
    """Leave out of the page the suite's benchmarks that no checked-in run
    measured (a history of a subset): asv lists them all, and the page would
    ask the server for graphs that do not exist."""
    path = out / "index.json"
    index = json.loads(path.read_text(encoding="utf-8"))
    summary = out / "graphs" / "summary"
    index["benchmarks"] = {name: meta for name, meta in index["benchmarks"].items()
                           if (summary / f"{name}.json").is_file()}
    path.write_text(json.dumps(index), encoding="utf-8")


def publish(html_dir=None):
    """Run ``asv publish`` and vendor the page's libraries; return the
    dashboard's directory."""
    cmd = [sys.executable, "-m", "asv", "publish", "--config", str(ROOT / "asv.conf.json")]
    if html_dir is not None:
        cmd += ["--html-dir", str(html_dir)]
    subprocess.run(cmd, cwd=ROOT, check=True)
    out = Path(html_dir) if html_dir is not None else ROOT / ".asv" / "html"
    index = out / "index.html"
    index.write_text(localise(index.read_text(encoding="utf-8")), encoding="utf-8")
    drop_unmeasured(out)
    shutil.copytree(VENDOR, out / "vendor", dirs_exist_ok=True)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--html-dir", help="where to write the dashboard (default .asv/html)")
    args = parser.parse_args(argv)
    out = publish(args.html_dir)
    print(f"dashboard: {out / 'index.html'}")


if __name__ == "__main__":
    main()
