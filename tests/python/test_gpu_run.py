"""bench/gpu/run.sh --dry-run: the GPU run's script, whole, on this CPU with tiny shapes, so that it is known to
work before a device is lent: the Debian packages unpacked and built against with PAD_WITH_GRPC=OFF, parity,
both throughput runs and the table."""
import os
import subprocess

from conftest import ROOT


def test_gpu_run_dry_run(tmp_path):
    subprocess.run([str(ROOT / "bench" / "gpu" / "prepare.sh")], check=True, timeout=600)
    result = subprocess.run([str(ROOT / "bench" / "gpu" / "run.sh"), "--dry-run"], capture_output=True,
                            text=True, timeout=1200, env={**os.environ, "OUT": str(tmp_path)})
    assert result.returncode == 0, result.stdout + result.stderr
    table = result.stdout
    assert table == (tmp_path / "table.md").read_text()
    assert "**no**" not in table
    parity = [line for line in table.splitlines() if line.startswith("| logits") or line.startswith("| pad")]
    assert len(parity) == 10, table  # 2 models x 2 dtypes of logits, 2 models x 3 requests of PAD
    rows = [line.split(" | ") for line in table.splitlines() if line.startswith(("| VANILLA", "| PAD"))]
    # VANILLA, PAD (PROMPT), PAD (WEIGHTED) shared, and PAD (PROMPT) separate, at batch 1 and 2.
    assert [(r[0], r[1], r[2]) for r in rows] == [
        (f"| {mode}", backbone, batch)
        for mode, backbone in (("VANILLA", ""), ("PAD (PROMPT)", "shared"),
                               ("PAD (WEIGHTED, 3 principles)", "shared"), ("PAD (PROMPT)", "separate"))
        for batch in ("1", "2")]
    for r in rows:
        tokens_per_s, step_ms, floor_ms = float(r[4]), float(r[5]), float(r[6])
        assert tokens_per_s > 0 and 0 < floor_ms and floor_ms < 5 * step_ms, r
    assert "PAD single stream at" in table and "costs at most" in table
