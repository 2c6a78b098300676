"""attnbench report on a tiny real run: files, numbers in the tables, escaping, HTML in Chromium."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from attnbench.cli import main
from attnbench.report.write import write_report
from attnbench.results import read_run

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def report(real_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    assert main(["report", str(real_run("base")), "-o", str(out), "--baseline", "numpy-naive"]) == 0
    return out


def test_files_exist_and_plots_are_images(report: Path):
    for name in ("report.md", "report.html", "summary.csv"):
        assert (report / name).stat().st_size > 0
    pngs = sorted((report / "plots").glob("*.png"))
    kinds = {p.stem.rsplit("-", 1)[1] for p in pngs}
    assert {"latency", "throughput", "agreement", "speedup"} <= kinds
    for png in pngs:
        assert png.read_bytes()[:8] == PNG
        assert png.with_suffix(".svg").read_text().lstrip().startswith("<?xml")


def test_summary_csv_holds_the_records_numbers(real_run, report: Path):
    _, records = read_run(real_run("base"))
    rows = {(r["backend"], r["case_id"]): r for r in csv.DictReader(open(report / "summary.csv"))}
    assert len(rows) == len(records)
    for rec in records:
        row = rows[(rec["backend"], rec["case_id"])]
        assert row["status"] == rec["status"]
        if rec["status"] == "ok":
            assert float(row["median_ms"]) == pytest.approx(rec["timing"]["median_ms"])


def _md_row(md: str, label: str) -> list[str]:
    line = next(line for line in md.splitlines() if line.startswith(f"| {label} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_markdown_table_numbers_and_best(real_run, report: Path):
    _, records = read_run(real_run("base"))
    md = (report / "report.md").read_text()
    header = _md_row(md, "case")
    ok = {r["backend"]: r for r in records if r["case_id"].startswith("b1-h2:2-q32-k32-d16")
          and r["mask"] == "causal"}
    cells = dict(zip(header, _md_row(md, "k32 causal"), strict=True))
    fastest = min((b for b in ok if ok[b]["status"] == "ok"),
                  key=lambda b: ok[b]["timing"]["median_ms"])
    for b in ("numpy-naive", "slow-copy"):
        assert f"{ok[b]['timing']['median_ms']:.3f} ms" in cells[b]
        assert ("★" in cells[b]) == (b == fastest)
    assert cells["test-markup"] == "error"


def test_plugin_markup_is_escaped(report: Path):
    md = (report / "report.md").read_text()
    page = (report / "report.html").read_text()
    assert not re.search(r"(?<!\\)<", md) and "\\<script\\>alert" in md  # every < escaped
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in page
    assert "<img src=x" not in page
    assert "\\| \\*bold\\* \\_it\\_ \\`tick\\`" in md  # no table break, no emphasis, no code


def test_run_with_failed_and_missing_records_renders(real_run, tmp_path: Path):
    broken = tmp_path / "broken"
    shutil.copytree(real_run("base"), broken)
    meta = json.loads((broken / "run.json").read_text())
    (broken / "run.json").write_text(json.dumps({**meta, "finished": False}))
    lines = (broken / "records.jsonl").read_text().splitlines()
    (broken / "records.jsonl").write_text("\n".join(lines[:4]) + '\n{"scenario": "tin')
    empty = tmp_path / "empty"
    shutil.copytree(real_run("base"), empty)
    (empty / "records.jsonl").write_text("")
    rep = write_report([broken, empty], tmp_path / "out")
    md = rep.markdown.read_text()
    assert "did not finish" in md and "has no records" in md
    assert rep.html.stat().st_size > 0


def test_a_busy_run_is_flagged_at_the_top_of_the_report(real_run, tmp_path: Path):
    runs = []
    for busy in (True, False):
        run = tmp_path / ("busy" if busy else "idle")
        shutil.copytree(real_run("base"), run)
        meta = json.loads((run / "run.json").read_text())
        # the verdict is set by hand: the tiny run was made under whatever load the host had
        # (and its readings are dropped, else the report would judge them again)
        meta.pop("contention", None)
        meta["busy"] = {"busy": busy, "advice": "its timings are not reliable: rerun on an idle "
                        "machine", "reasons": ["other processes used 1.9 of the 2 cores"] * busy,
                        "seen": "load 4.1 on 2 cores before the run"}
        (run / "run.json").write_text(json.dumps(meta))
        runs.append(run)
    rep = write_report(runs, tmp_path / "out")
    md = rep.markdown.read_text()
    top = md[:md.index("## Runs")]
    assert top.count("was made on a busy machine; its timings are not reliable") == 1
    assert top.startswith("# attnbench report\n\n> **warning:** run ")
    assert "why: other processes used 1.9 of the 2 cores" in top
    assert "seen: load 4.1 on 2 cores before the run" in top
    runs_table = md[md.index("## Runs"):].split("\n\n")[1]
    assert "| machine |" in runs_table and "| busy |" in runs_table and "| idle |" in runs_table
    html = rep.html.read_text()
    assert html.index("was made on a busy machine") < html.index("<h2>Runs")


def test_report_of_a_folder_that_is_not_a_run_is_a_usage_error(tmp_path: Path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err


PROBE = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const p = document.createElement('pre'); p.id = 'probe';
  p.textContent = JSON.stringify({n: imgs.length,
    data: imgs.filter(i => i.src.startsWith('data:image/png;base64,')).length,
    drawn: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
    scripts: document.scripts.length});
  document.body.appendChild(p);
});
</script></body>"""


def chromium_dom(chromium: str, page: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", "--dump-dom",
         page.as_uri()], capture_output=True, text=True, timeout=120)


def test_html_renders_in_chromium(chromium: str, report: Path, tmp_path: Path):
    page = (report / "report.html").read_text()
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", PROBE))
    proc = chromium_dom(chromium, probe)
    found = re.search(r'<pre id="probe">(.*?)</pre>', proc.stdout)
    assert found, proc.stderr[-2000:]
    stats = json.loads(found.group(1).replace("&quot;", '"'))
    assert stats["n"] >= 4 and stats["data"] == stats["n"] == stats["drawn"]
    assert stats["scripts"] == 1  # only the probe: the report itself runs no script
    assert "Uncaught" not in proc.stderr and "ERROR:CONSOLE" not in proc.stderr


def test_markup_stays_text_in_chromium(chromium: str, report: Path):
    proc = chromium_dom(chromium, report / "report.html")
    assert "<script" not in proc.stdout.lower() and "<img src=\"x\"" not in proc.stdout
    assert "&lt;script&gt;alert('pwned')&lt;/script&gt;" in proc.stdout
    assert "Uncaught" not in proc.stderr and "ERROR:CONSOLE" not in proc.stderr


def test_measurements_table_shows_each_records_numbers(real_run, report: Path):
    """Set-up, first call, median, IQR, peak memory and GFLOP/s of every ok record, as
    recorded."""
    _, records = read_run(real_run("base"))
    md = (report / "report.md").read_text()
    section = md.split("## Measurements", 1)[1].split("\n## ", 1)[0]
    rows = {(cells[2], cells[3]): cells for line in section.splitlines()
            if line.startswith("| ") and not line.startswith("| run")
            and (cells := [c.strip() for c in line.strip("|").split("|")])}
    measured = [r for r in records if r["status"] in ("ok", "mismatch")]
    assert measured and len(rows) == len(measured)
    for rec in measured:
        cells = rows[(rec["backend"], rec["case_id"])]
        assert float(cells[4]) == pytest.approx(rec["prepare_ms"], rel=5e-3, abs=1e-3)
        assert float(cells[5]) == pytest.approx(rec["first_call_ms"], rel=5e-3)
        assert float(cells[6]) == pytest.approx(rec["timing"]["median_ms"], rel=5e-3)
        assert float(cells[10]) == pytest.approx(rec["gflops_per_s"], rel=5e-3)
        if rec.get("memory"):
            assert float(cells[8]) == pytest.approx(rec["memory"]["peak_bytes"] / 2**20,
                                                    rel=5e-3, abs=1e-3)


def test_closeness_to_the_bound_per_backend(real_run, report: Path):
    """Per backend: how many checked records, and the max error/bound, as the records say."""
    from attnbench.record import VERIFIED, error_ratio

    _, records = read_run(real_run("base"))
    md = (report / "report.md").read_text()
    section = md.split("## How close to the bound", 1)[1].split("\n## ", 1)[0]
    rows = {cells[0]: cells for line in section.splitlines()
            if line.startswith("| ") and not line.startswith("| backend")
            and (cells := [c.strip() for c in line.strip("|").split("|")])}
    for backend in {r["backend"] for r in records if r["status"] in VERIFIED}:
        mine = [error_ratio(r) for r in records
                if r["backend"] == backend and r["status"] in VERIFIED]
        assert int(rows[backend][1]) == len(mine)
        assert float(rows[backend][4]) == pytest.approx(max(mine), rel=0.05)


def test_the_mask_picture_is_embedded_beside_each_table(report: Path):
    masks = sorted((report / "plots").glob("*-mask.png"))
    assert len(masks) == 1 and masks[0].read_bytes()[:8] == PNG  # one group: one picture
    md = (report / "report.md").read_text()
    assert f"(plots/{masks[0].name})" in md
    assert md.index(masks[0].name) < md.index("| case |")  # placed with its table
    page = (report / "report.html").read_text()
    assert page.count('<figure class="mask">') == 1 and "float:right" in page


def test_a_baseline_no_run_has_is_refused_in_one_line(real_run, tmp_path, capsys):
    """--baseline nope wrote a report whose speedups were "over nope" (none); the default,
    torch-naive, may be absent (its columns are then left out)."""
    assert main(["report", str(real_run("base")), "-o", str(tmp_path / "r"),
                 "--baseline", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--baseline nope: no record of that backend" in err
    assert "numpy-naive" in err and not (tmp_path / "r").exists()
