"""The benchmark command (`sbm-bench --quick`): produces its report and plots, and they are sane.

Runs the quick mode once (about 2 minutes on 2 cores, of which the real-data section about
20 s) into a temporary folder; needs the virtual head's dependencies (slab's KEMAR set, cached
after the first use) and espeak-ng. The real-data section reads ``../shared/data`` next to the
checkout (or ``$SBM_DATA_DIR``); without it those tests are skipped.
"""

import math
import os
import re
import shutil

import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("soundfile")

if shutil.which("espeak-ng") is None:
    pytest.skip("espeak-ng is not installed (speech test signals)", allow_module_level=True)

from sbm_ros.apps import bench  # noqa: E402
from sbm_ros.apps.bench import cli as bench_cli  # noqa: E402
from sbm_ros.apps.bench.realdata import resolve_data_dir  # noqa: E402

NUM = r"([0-9]+(?:\.[0-9]+)?)"
PM = NUM + r" ± " + NUM


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("bench")
    rc = bench.main(["--quick", "--out-dir", str(out_dir), "--seed", "0"])
    assert rc == 0
    text = (out_dir / "benchmark.md").read_text()
    return out_dir, text


def _section(text, title):
    i = text.index(title)
    j = text.find("\n## ", i + len(title))
    return text[i:j if j > 0 else None]


def _table_rows(block):
    """Rows (lists of cells) of the first Markdown table in ``block`` (header excluded)."""
    lines = []
    for ln in block.splitlines():
        if ln.startswith("|"):
            lines.append(ln)
        elif lines:
            break                                  # the first table ends at its first non-row
    assert len(lines) >= 3, "no Markdown table found"
    assert set(lines[1].replace("|", "").strip()) <= set("-: "), "second line is not a rule"
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]]


def _table1(text, room):
    sec = _section(text, "## Table I")
    block = sec[sec.index(f"**{room}"):]
    end = block.find("\n**", 3)
    block = block[:end if end > 0 else None]
    rows = {}
    for cells in _table_rows(block):
        az = re.fullmatch(PM, cells[2])
        assert az, f"azimuth cell {cells[2]!r} does not parse"
        el = re.fullmatch(PM, cells[3])
        rows[cells[0]] = dict(az=float(az.group(1)), az_std=float(az.group(2)),
                              el=float(el.group(1)) if el else None,
                              over5=float(cells[4]), cpu=float(cells[6]))
    return rows


def test_files_exist_and_are_pngs(quick_run):
    out_dir, text = quick_run
    assert text.startswith("# sbm_ros benchmark")
    pngs = sorted(p for p in os.listdir(out_dir) if p.endswith(".png"))
    assert {"bench_error_time_vs_K.png", "bench_error_vs_N.png",
            "bench_camera_frame.png"} <= set(pngs)
    for p in pngs:
        data = (out_dir / p).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, p
        assert f"]({p})" in text, f"{p} is not linked from benchmark.md"


def test_report_states_provenance(quick_run):
    _, text = quick_run
    assert "**Command**: `sbm-bench --quick" in text
    assert "git commit" in text and "**Machine**" in text and "numpy" in text
    assert "## Deviations from the paper's protocol" in text


def test_table1_parses_and_is_sane(quick_run):
    _, text = quick_run
    for room in ("Reverberant", "Anechoic"):
        rows = _table1(text, room)
        assert set(rows) == {"SBM-1 ILPD", "SBM-1 ILD", "SBM-1 IPD", "PHAT-histogram"}
        for name, r in rows.items():
            assert math.isfinite(r["az"]) and r["az"] < 5.0, (room, name, r)
            assert 0.0 <= r["over5"] <= 100.0
            assert 0.0 < r["cpu"] < 1.0, (room, name, r)     # far below real time
            if name.startswith("SBM"):
                assert r["el"] is not None and r["el"] < 8.0, (room, name, r)
            else:
                assert r["el"] is None


def test_sbm1_ilpd_azimuth_under_half_of_phat_anechoic(quick_run):
    _, text = quick_run
    rows = _table1(text, "Anechoic")
    assert rows["SBM-1 ILPD"]["az"] < 0.5 * rows["PHAT-histogram"]["az"], rows


@pytest.mark.xfail(strict=True, reason=(
    "issue 3 target not met in the fan-free room: on the virtual head's reverberant "
    "narrow-lens protocol without ambient noise PHAT-histogram azimuth (0.17 deg, full run) is "
    "better than SBM-1 ILPD (0.25 deg); with the paper's computer fan in the room it is met "
    "(test_ambient_fan_section). strict: this test fails as soon as the fan-free target is "
    "reached, so the marker gets removed."))
def test_sbm1_ilpd_azimuth_under_half_of_phat_reverberant(quick_run):
    _, text = quick_run
    rows = _table1(text, "Reverberant")
    assert rows["SBM-1 ILPD"]["az"] < 0.5 * rows["PHAT-histogram"]["az"], rows


def test_ambient_fan_section(quick_run):
    """A directional fan breaks PHAT's delays; SBM's activity mask keeps SBM-1 accurate."""
    out_dir, text = quick_run
    rows = {r[0]: r for r in _table_rows(_section(text, "## Ambient noise"))}
    assert list(rows) == ["no fan", "15 dB"]
    parsed = {}
    for name, r in rows.items():
        az, el, ph = (re.fullmatch(PM, r[i]) for i in (1, 2, 4))
        assert az and el and ph, r
        parsed[name] = dict(sbm_az=float(az.group(1)), sbm_el=float(el.group(1)),
                            phat_az=float(ph.group(1)), ratio=float(r[6]))
        assert parsed[name]["ratio"] == pytest.approx(
            parsed[name]["sbm_az"] / parsed[name]["phat_az"], abs=0.01)
    quiet, fan = parsed["no fan"], parsed["15 dB"]
    assert fan["sbm_az"] < 0.5 * fan["phat_az"], parsed
    assert fan["sbm_az"] < 2.0 * quiet["sbm_az"] and fan["sbm_el"] < 2.0 * quiet["sbm_el"], parsed
    assert fan["phat_az"] > 2.0 * quiet["phat_az"], parsed
    assert (out_dir / "bench_error_vs_fan.png").exists()


def test_table2_parses_and_is_sane(quick_run):
    _, text = quick_run
    rows = _table_rows(_section(text, "## Table II"))
    names = [r[0] for r in rows]
    assert names == ["SBM-2 ILPD", "SBM-2 ILD", "SBM-2 IPD", "PHAT-histogram"]
    cell = re.compile(PM + r" / (?:" + PM + r"|–) / " + NUM + r" %")
    for r in rows:
        assert len(r) == 5
        for c in r[1:]:
            m = cell.match(c)
            assert m, f"cell {c!r} does not parse"
            az, el, out = float(m.group(1)), m.group(3), float(m.group(5))
            assert az < 10.0 and 0.0 <= out <= 100.0, (r[0], c)
            if r[0].startswith("SBM"):
                assert el is not None and float(el) < 10.0, (r[0], c)
                assert out < 50.0, (r[0], c)


def test_table2_extra_k_and_wn_s_diagnostics(quick_run):
    _, text = quick_run
    sec = _section(text, "## Table II")
    extra = sec[sec.index("**Beyond the protocol"):]
    rows = _table_rows(extra)
    assert rows[0][0] == "SBM-2 ILPD, K = 20" and len(rows[0]) == 5
    cell = re.compile(PM + r" / " + PM + r" / " + NUM + r" %")
    for c in rows[0][1:]:
        m = cell.fullmatch(c)
        assert m and float(m.group(1)) < 10.0 and float(m.group(3)) < 10.0, c
    diag = _table_rows(sec[sec.index("**Why the speech source"):])
    assert sum(int(r[1]) for r in diag) == 50          # every WN+S mixture of quick mode
    for r in diag:
        assert 0.0 <= float(r[3]) <= 100.0 and float(r[2]) >= 0.0 and float(r[4]) >= 0.0, r


def test_sliding_window_and_speed_sections(quick_run):
    _, text = quick_run
    sec = _section(text, "## Sliding window")
    for label in ("One talker", "Two talkers"):
        m = re.search(label + r".*?azimuth " + PM + r"°, elevation " + PM + "°", sec, re.S)
        assert m, label
        assert float(m.group(1)) < 10.0 and float(m.group(3)) < 10.0
    speed = _section(text, "## Speed")
    gf = float(re.search(r"\*\*" + NUM + r" GFLOP/s\*\*", speed).group(1))
    assert gf > 0.1
    lat = _table_rows(speed)
    assert len(lat) >= 2
    for r in lat[:2]:
        median_ms = float(r[5].split()[0])
        naive_ms = float(r[7].split()[0])
        assert 0.0 < median_ms < 100.0
        assert naive_ms > median_ms, r      # the sufficient statistics beat the naive sum


def test_xllim_row_or_reason(quick_run):
    _, text = quick_run
    sec = _section(text, "## Second GLLiM implementation")
    if "**Not reported**" in sec:
        assert "xllim" in sec and len(sec) > 80      # says why
        return
    rows = _table_rows(sec)
    assert len(rows) == 2
    for r in rows:
        az = re.fullmatch(PM, r[3])
        assert az and float(az.group(1)) < 10.0, r


def _realdata_rows(text):
    """{(case, speech): parsed row} of the real-data table."""
    sec = _section(text, "## Real measured data")
    rows = {}
    for cells in _table_rows(sec[sec.index("| case"):]):
        assert len(cells) == 11, cells
        az, ph = re.fullmatch(PM, cells[4]), re.fullmatch(PM, cells[7])
        assert az and ph, cells
        el = re.fullmatch(PM, cells[5])
        rho = cells[10].replace("−", "-")
        rows[(cells[0], cells[1])] = dict(
            method=cells[3].split()[0], az=float(az.group(1)), az_std=float(az.group(2)),
            el=float(el.group(1)) if el else None, over5=float(cells[6]),
            phat=float(ph.group(1)), phat_over5=float(cells[8]), coverage=float(cells[9]),
            rho=None if rho == "–" else float(rho))
    return rows


def test_realdata_section_runs_on_the_shared_data(quick_run):
    out_dir, text = quick_run
    assert "## Real measured data" in text
    sec = _section(text, "## Real measured data")
    if resolve_data_dir()[0] is None:
        assert "**Not run**" in sec and "RealRoomBRIRs" in sec and "spatialaudiometrics" in sec
        pytest.skip("no real-data folder (../shared/data or $SBM_DATA_DIR)")
    rows = _realdata_rows(text)
    cases = {c for c, _ in rows}
    assert {"Surrey Room A, trained", "Surrey Room A, held-out", "Surrey Room A, two talkers",
            "Surrey anechoic → Room A"} <= cases, cases
    assert {k for _, k in rows} == {"ARCTIC", "espeak-ng"}
    for key, r in rows.items():
        for v in (r["az"], r["az_std"], r["phat"], r["coverage"]):
            assert math.isfinite(v) and v >= 0.0, (key, r)
        assert 0.0 <= r["over5"] <= 100.0 and 0.0 <= r["phat_over5"] <= 100.0, (key, r)
        assert r["coverage"] <= 100.0, (key, r)
        assert r["rho"] is None or -1.0 <= r["rho"] <= 1.0, (key, r)
        assert r["method"] == ("SBM-2" if "two talkers" in key[0] else "SBM-1"), (key, r)
    for kind in ("ARCTIC", "espeak-ng"):
        # sanity of the data and the rendering, not a target for SBM: PHAT on the trained
        # directions of the real room is well under 2 degrees
        assert rows[("Surrey Room A, trained", kind)]["phat"] < 2.0, rows
    sonicom = [r for (c, _), r in rows.items() if c.startswith("SONICOM")]
    for r in sonicom:
        assert r["el"] is not None and math.isfinite(r["el"]), r
    if sonicom:
        # the held-out row (quick mode: SONICOM 1, row 0) gets its per-row line and the
        # interaural-cue measure that explains it
        held = _table_rows(sec[sec.index("**Held-out elevation rows"):])
        assert held and all(len(c) == 9 for c in held), held
        for c in held:
            assert c[2] == "0°" and int(c[3]) >= 1, c
            assert 0.0 <= float(c[5]) < 90.0 and 0.0 <= float(c[6]) <= 100.0, c
            assert 0.0 < float(c[7]) < 30.0 and 0.0 < float(c[8]) < 30.0, c
    # calibration by sweep on the measured room-A head (quick: one dwell): the stepped sweep
    # gives one sample per direction at least, and its model localises speech about as well
    # as the grid model (sanity: under 2 degrees; full-run figures are in docs/benchmark.md)
    sweep = _table_rows(sec[sec.index("**Calibration by sweep on the measured heads**"):])
    assert len(sweep) == 1 and sweep[0][0] == "Surrey Room A", sweep
    c = sweep[0]
    assert float(c[1]) == 1.2 and float(c[2]) > 30.0
    assert int(c[4].split()[0]) >= 13
    az_sweep, az_grid = re.fullmatch(PM, c[6]), re.fullmatch(PM, c[8])
    assert az_sweep and az_grid, c
    assert float(az_sweep.group(1)) < 2.0 and float(az_grid.group(1)) < 2.0, c
    assert "found by" in sec and "Section run time" in sec
    assert "negative" in sec                       # the reader is told which sign is good
    assert (out_dir / "bench_realdata.png").exists()
    assert "](bench_realdata.png)" in sec


def test_quick_and_partial_runs_do_not_write_to_docs(monkeypatch):
    """Only a full run of every section defaults to the committed docs/ report."""
    seen = []

    def fake_run(bc):
        seen.append(bc)
        return dict(report="", report_path=os.path.join(bc.out_dir, "benchmark.md"), plots=[],
                    runtime_s=0.0)

    monkeypatch.setattr(bench_cli, "run", fake_run)
    for argv in (["--quick"], ["--quick", "--only", "realdata"], ["--only", "realdata"],
                 ["--only", "virtual"], []):
        assert bench_cli.main(argv) == 0
    dirs = [os.path.normpath(bc.out_dir) for bc in seen]
    assert dirs[:4] == ["out/bench-quick", "out/bench-quick-realdata", "out/bench-realdata",
                        "out/bench-virtual"], dirs
    assert dirs[4] == "docs"
    assert all(not d.startswith("docs") for d in dirs[:4])
    assert (seen[1].virtual, seen[1].realdata) == (False, True)
    assert (seen[3].virtual, seen[3].realdata) == (True, False)
    assert seen[0].quick and seen[0].virtual and seen[0].realdata


def test_data_dir_resolution(tmp_path, monkeypatch):
    d, how = resolve_data_dir(str(tmp_path))
    assert d == str(tmp_path) and how == "--data-dir"
    d, how = resolve_data_dir(str(tmp_path / "missing"))
    assert d is None and "missing" in how
    monkeypatch.setattr("sbm_ros.apps.bench.realdata._checkout_data_dir",
                        lambda: str(tmp_path / "nowhere"))
    monkeypatch.setenv("SBM_DATA_DIR", str(tmp_path))
    assert resolve_data_dir() == (str(tmp_path), "$SBM_DATA_DIR")
    monkeypatch.delenv("SBM_DATA_DIR")
    assert resolve_data_dir()[0] is None


def test_realdata_skips_with_download_advice(tmp_path, monkeypatch):
    from sbm_ros.apps.bench.common import BenchConfig
    from sbm_ros.apps.bench.realdata import run_realdata
    from sbm_ros.apps.bench.report import _realdata_section

    out = {}
    res = run_realdata(BenchConfig.make(True, data_dir=str(tmp_path / "missing")), out)
    assert out["realdata"] is res and res["skipped"] and not res["rows"]
    lines = []
    _realdata_section(lines.append, res, BenchConfig.make(True), [])
    text = "\n".join(lines)
    assert "**Not run**" in text
    for where in ("IoSR-Surrey/RealRoomBRIRs", "cmu_arctic", "spatialaudiometrics",
                  "--data-dir", "SBM_DATA_DIR"):
        assert where in text, where


def test_voices_section(quick_run):
    """Speech activity and voice tracking on the quick voice scenes (bench/voices.py)."""
    _, text = quick_run
    assert "## Voices: speech activity and voice tracking" in text
    rows = [line.split("|") for line in text.splitlines()
            if line.startswith("| crossing") or line.startswith("| noises")]
    assert len(rows) >= 4
    for r in rows:
        found, total = r[6].strip().split("/")
        assert int(total) > 0 and int(found) >= int(total) - 1      # utterances found
