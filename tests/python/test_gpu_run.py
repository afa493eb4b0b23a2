"""bench/gpu/run.sh --dry-run: the GPU run's script, whole, on this CPU with tiny shapes, so that it is known to
work before a device is lent: the Debian packages unpacked and built against with PAD_WITH_GRPC=OFF, parity,
the three throughput runs (shared and separate PRM backbones, and decode steps as CUDA graphs, here their CPU
twin) and the table."""
import os
import re
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
    # VANILLA, PAD (PROMPT), PAD (WEIGHTED) shared, PAD (PROMPT) separate, then VANILLA and PAD (PROMPT) as
    # CUDA graphs, at batch 1 and 2; then PAD (PROMPT) with long prompts, batch 2 (64 on the device).
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        (f"| {mode}", backbone, steps, batch)
        for mode, backbone, steps in (("VANILLA", "", "eager"), ("PAD (PROMPT)", "shared", "eager"),
                                      ("PAD (WEIGHTED, 3 principles)", "shared", "eager"),
                                      ("PAD (PROMPT)", "separate", "eager"), ("VANILLA", "", "CUDA graphs"),
                                      ("PAD (PROMPT)", "shared", "CUDA graphs"))
        for batch in ("1", "2")] + [("| PAD (PROMPT)", "shared", "eager, long prompts", "2")]
    assert re.search(r"Long prompts: \d+-token prompts, 2 PAD streams at once", table), table
    for r in rows:
        tokens_per_s, step_ms, floor_ms = float(r[5]), float(r[6]), float(r[7])
        assert tokens_per_s > 0 and 0 < floor_ms and floor_ms < 5 * step_ms, r
    for steps in ("eager", "CUDA graphs"):
        assert f"{steps}: PAD single stream at" in table and f"{steps}: PAD (shared backbone) costs at most" in table
