"""check --junit-xml: one test case per record, failures with their metrics, unsupported skipped."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from attnbench.report.junit import write_junit
from attnbench.results import read_run


def test_one_testcase_per_record_with_statuses(real_run, tmp_path: Path):
    _, records = read_run(real_run("base"))
    root = ET.parse(write_junit(records, tmp_path / "j.xml")).getroot()
    suite = root.find("testsuite")
    cases = suite.findall("testcase")
    assert len(cases) == len(records) == int(suite.get("tests"))
    for rec, case in zip(records, cases, strict=True):
        assert case.get("classname") == f"tiny.{rec['backend']}"
        assert case.get("name") == rec["case_id"]
        kinds = [child.tag for child in case]
        expected = {"ok": "system-out", "unsupported": "skipped", "error": "error"}[rec["status"]]
        assert kinds == [expected]
    errors = [c.find("error") for c in cases if c.find("error") is not None]
    assert len(errors) == int(suite.get("errors")) > 0
    assert all("<script>alert('pwned')</script>" in e.text for e in errors)  # parsed back intact


def test_check_cli_writes_failures_carrying_the_metrics(real_run):
    _, records = read_run(real_run("wrong"))  # check --junit-xml, slow-copy made wrong
    suite = ET.parse(real_run("wrong") / "junit.xml").getroot().find("testsuite")
    assert suite.get("tests") == str(len(records)) == "4"
    assert suite.get("failures") == "2" and suite.get("errors") == "0"
    failures = suite.findall("testcase[@classname='tiny.slow-copy']/failure")
    assert len(failures) == 2
    wrong = {r["case_id"]: r for r in records if r["backend"] == "slow-copy"}
    for case in suite.findall("testcase[@classname='tiny.slow-copy']"):
        out = wrong[case.get("name")]["agreement"]["outputs"][0]
        assert out["passed"] is False
        text = case.find("failure").text
        assert f"max_abs_err={out['max_abs_err']}" in text and f"bound={out['bound']}" in text
    assert not suite.findall("testcase[@classname='tiny.numpy-naive']/failure")
