"""A short soak and burst (client/pad_soak.py) against the real server: mixed modes with cancels, expiring
deadlines and stop strings, then a burst past the queue. The 10-minute run is recorded in docs/testing.md."""
import json
import subprocess
import sys

from conftest import ROOT


def test_short_soak_and_burst(tmp_path):
    report_path = tmp_path / "soak.json"
    result = subprocess.run([sys.executable, str(ROOT / "client" / "pad_soak.py"), "--seconds", "20", "--streams", "16",
                             "--burst", "200", "--out", str(report_path)], capture_output=True, text=True,
                            timeout=600, cwd=ROOT)
    report = json.loads(report_path.read_text())
    assert result.returncode == 0 and report["pass"], (result.stdout, result.stderr[-3000:])
    # The run exercised what it claims to: cancels, expired deadlines and refusals all happened.
    statuses = " ".join(report["soak"]["by_kind_behaviour_status"])
    assert "/cancel/CANCELLED" in statuses and "/deadline/DEADLINE_EXCEEDED" in statuses, statuses
    assert {"vanilla/", "pad/", "weighted/"} <= {key.split("/")[0] + "/" for key in
                                                 report["soak"]["by_kind_behaviour_status"]}
    assert report["burst"]["statuses"].get("RESOURCE_EXHAUSTED", 0) > 0 and report["burst"]["statuses"]["OK"] > 0
