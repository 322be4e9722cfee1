"""The answer at a glance: on a notes_quickstart-shaped sweep with repeats, `python -m analysis rank`
opens with the winning remedy and whether its lead is within noise, the best by held-out loss across
stream groups and the setting that put runs on another stream; its table fits 100 columns with one
line per row, rows named by remedy or changed setting, pooled rows showing means."""
import json
import statistics

import pytest

from analysis import load_runs
from analysis.cli import main
from analysis.synthetic import write_notes_sweep

WORSE = {"more_warmup": -0.02, "clip_harder": -0.01, "sampled": 0.2}  # the sampled trial (shuffled) is best on held-out rows


def rank(capsys, *argv):
    code = main(["rank", *argv])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out.splitlines()


@pytest.mark.parametrize(("gain", "call"), [(0.003, "within noise"), (0.05, "beyond noise")])
def test_the_first_ten_lines_name_the_winning_remedy_and_whether_its_lead_is_within_noise(tmp_path, capsys, gain, call):
    sweep = write_notes_sweep(tmp_path / "multirun", {"lower_lr": gain, **WORSE})
    head = "\n".join(rank(capsys, str(sweep))[:10])
    assert "Winner: lower_lr (optimizer.lr=0.001)" in head
    assert f"{gain:.3g} " in head and "below the baseline's" in head and call in head
    assert "Best by held-out loss, groups A and B together: optimizer.lr=0.0035" in head and "(group B)" in head
    assert "set by trainer.shuffle=true (group A: trainer.shuffle=false)" in head
    assert "fingerprint" not in head


def test_the_table_fits_100_columns_one_line_a_row_named_by_setting_with_pooled_means(tmp_path, capsys):
    sweep = write_notes_sweep(tmp_path / "multirun", {"lower_lr": 0.05, **WORSE})
    lines = rank(capsys, str(sweep), "--json", str(tmp_path / "r.json"))
    table = [line for line in lines if line[:3].strip() in ("A1", "A2", "A3", "A4", "B1", "B2")]
    assert [line.split()[1] for line in table[:4]] == ["lower_lr", "baseline", "clip_harder", "more_warmup"]
    assert table[4].split()[1].startswith("lr=0.0035") and table[5].split()[1] == "shuffle"
    assert all(len(line) <= 100 for line in lines if not line.startswith(("Winner", "Best", "Group", "group", "ranked")))
    assert "trial-" not in "\n".join(table)
    document = json.loads((tmp_path / "r.json").read_text())
    assert document["verdict"][0].startswith("Winner: lower_lr")
    rows = document["rows"]
    runs = {run.path: run for run in load_runs([str(sweep)]).runs}
    for row in rows:
        members = [run for run in runs.values() if run.name == row["run"].split(" (+")[0]]
        assert len(members) == 2 and row["repeats"] == 2
        assert row["eval_loss"] == pytest.approx(statistics.fmean(run.eval_loss for run in members))
        assert "trainer.seed" not in row


def test_wide_shows_every_column_still_one_line_a_row(tmp_path, capsys):
    sweep = write_notes_sweep(tmp_path / "multirun", {"lower_lr": 0.05, **WORSE})
    lines = rank(capsys, str(sweep), "--wide")
    header = next(line for line in lines if line.lstrip().startswith("group"))
    assert all(column in header.split() for column in ("setting", "descent", "tail", "params", "run", "flags"))
    table = [line for line in lines if line.startswith(("A ", "B "))]
    assert len(table) == 6 and all("lr=" in line and "trial-" in line for line in table)
