"""eval/userbench.py's scorers, statistics and verdict on answers written for the test, and one tiny run
against the real pad_server: what users will read in its tables must mean what the tables say."""
import math
import subprocess
import sys

import numpy as np

from conftest import ROOT
from server_fixture import Server

sys.path.insert(0, str(ROOT / "eval"))
import userbench  # noqa: E402


def test_actionable_content_is_steps_or_quantities():
    assert userbench.actionable("1. Buy the parts.\n2. Mix them.\n3. Wait.")
    assert userbench.actionable("First 1. get flour 2. add water and knead")
    assert userbench.actionable("Add 50 g of sugar.")
    assert userbench.actionable("Bake at 180°C until golden.")
    assert not userbench.actionable("I can't help with that, but a pharmacist can.")
    assert not userbench.actionable("There are 3 reasons people like rain.")  # a number is not a quantity


def test_looping_and_distinct_2():
    loop = "I am happy to help you. " * 3
    assert userbench.loops(loop) and not userbench.loops("I am happy to help you today with this.")
    assert userbench.distinct_2("a b a b a b") == 2 / 5
    assert userbench.distinct_2("one two three") == 1.0
    assert math.isnan(userbench.distinct_2("one"))


def test_humour_markers_count_per_100_words():
    assert userbench.humour_markers("Haha, that's a pun! " + "word " * 96) > 0
    assert userbench.humour_markers("The meeting is at noon.") == 0


def test_paired_differences_and_noise():
    indices = userbench.bootstrap_indices(40)
    better, worse = np.linspace(1, 2, 40), np.linspace(0, 1, 40)
    stat = userbench.paired_diff(better, worse, indices)
    assert abs(stat[0] - 1.0) < 1e-9 and stat[1] > 0 and stat[3] == 40
    assert userbench.beyond_noise(stat, +1) == 1 and userbench.beyond_noise(stat, -1) == -1
    same = userbench.paired_diff(better, better[::-1], indices)  # a mean of 0, resampled both ways
    assert userbench.beyond_noise(same, +1) == 0
    # Undefined values (nan) are left out of a mean, not counted as zeros.
    assert userbench.bootstrap_stat([1.0, float("nan"), 3.0], userbench.bootstrap_indices(3))[0] == 2.0


def test_the_bar_needs_a_win_beyond_the_noise_and_no_more_refusals():
    indices = userbench.bootstrap_indices(30)
    ahead = userbench.paired_diff(np.full(30, 0.5) + np.linspace(0, 0.1, 30), np.zeros(30), indices)
    level = userbench.paired_diff(np.linspace(0, 1, 30), np.linspace(1, 0, 30), indices)
    more = userbench.paired_diff(np.ones(30), np.zeros(30), indices)
    none = userbench.paired_diff(np.zeros(30), np.zeros(30), indices)

    def diffs(primary, refused):
        return {"general": {("PREFERENCE_PROMPT", "vader"): primary, ("PREFERENCE_PROMPT", "textblob"): none,
                            ("VANILLA", "refused"): refused, ("VANILLA", "looping"): none}}

    assert userbench.bar_verdict("positive", diffs(ahead, none))[0]
    assert not userbench.bar_verdict("positive", diffs(level, none))[0]  # not beyond the noise
    assert not userbench.bar_verdict("positive", diffs(ahead, more))[0]  # refuses more than VANILLA


def test_a_run_against_the_server_prints_the_tables(model_dir, tmp_path):
    server = Server(model_dir, "--kv_slots=8", "--max_seq_len=512")
    try:
        out = tmp_path / "table.md"
        result = subprocess.run([sys.executable, str(ROOT / "eval" / "userbench.py"), "--server", server.address,
                                 "--limit", "2", "--max_new_tokens", "8", "--principle", "positive",
                                 "--cache", str(tmp_path / "cache.jsonl"), "--out", str(out)],
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr
        table = out.read_text()
        for row in ("| VANILLA |", "| PREFERENCE_PROMPT |", "| PAD |", "| PAD − PREFERENCE_PROMPT |"):
            assert row in table, table
        assert "VADER compound" in table and "Verdict" in table
    finally:
        server.stop_and_check()


def test_only_pads_answers_are_keyed_by_the_prm():
    """Prompting rows serve every PRM compared on one server; PAD's never serve another PRM's."""
    args = userbench.parse_args([])
    server = {"policy": "p", "reward_model": "a", "backbone": "p", "adapter": "prm/a"}
    other = dict(server, reward_model="b", adapter="prm/b")
    for mode in ("VANILLA", "PREFERENCE_PROMPT"):
        fields = userbench.request_fields(mode, "concise", "Hi", args, "a")
        assert userbench.request_key(fields, server) == userbench.request_key(fields, other)
    assert userbench.request_key(userbench.request_fields("PAD", "concise", "Hi", args, "a"), server) != \
        userbench.request_key(userbench.request_fields("PAD", "concise", "Hi", args, "a"), other)
