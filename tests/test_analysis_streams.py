"""Only runs trained on the same samples are ranked against each other by training loss, and every
difference smaller than the seed spread is marked, on run dirs whose result.json records the stream."""
from analysis import load_runs, rank_runs
from analysis.cli import main
from analysis.synthetic import synthetic_losses, write_run_dir


def stream(fingerprint: str, samples: int = 240, split: str = "s1", data_seed: int = 0) -> dict:
    return {"data_fingerprint": fingerprint, "samples_trained": samples, "split_fingerprint": split,
            "data_seed": data_seed}


def write_study(root, other_stream):
    """Three runs on stream "aaa", and one on `other_stream` whose training loss is far lower."""
    for index in range(3):
        write_run_dir(root / f"lr{index}", synthetic_losses(60, 0.02 + 0.01 * index, 0.02, seed=index), batch_size=4,
                      overrides={"optimizer.lr": 1e-4 * (index + 1)}, result_fields=stream("aaa"), eval_loss=2.0 - index / 10)
    write_run_dir(root / "first_rows", [loss - 0.5 for loss in synthetic_losses(60, 0.05, 0.02, seed=9)], batch_size=4,
                  overrides={"optimizer.lr": 5e-4}, result_fields=other_stream, eval_loss=1.75)


def test_a_run_on_another_data_stream_is_not_ranked_against_the_others(tmp_path, capsys):
    write_study(tmp_path, stream("bbb"))
    ranking = rank_runs(load_runs([str(tmp_path)]).runs)
    main_names = [row.run.name.rsplit("/", 1)[-1] for row in ranking.main_rows]
    assert sorted(main_names) == ["lr0", "lr1", "lr2"]
    assert [row.rank for row in ranking.main_rows] == [1, 2, 3]
    apart = next(row for row in ranking.rows if row.run.name.endswith("first_rows"))
    assert apart.group == "B" and apart.rank == 1
    assert any("group B (1 runs, read at 240 samples) set apart: trained on data stream bbb" in note
               for note in ranking.notes())
    assert main(["rank", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "set apart" in out and "training losses measured on different samples do not compare" in out


def test_eval_loss_compares_across_streams_on_the_same_held_out_rows(tmp_path):
    write_study(tmp_path, stream("bbb"))
    ranking = rank_runs(load_runs([str(tmp_path)]).runs, by="eval_loss")
    assert len(ranking.groups) == 1 and len(ranking.main_rows) == 4
    assert ranking.rows[0].run.name.endswith("first_rows")


def test_a_run_stopped_early_joins_the_stream_of_its_split_and_data_seed(tmp_path):
    write_study(tmp_path, stream("aaa"))
    write_run_dir(tmp_path / "pruned", synthetic_losses(40, 0.02, 0.02, seed=5), batch_size=4,
                  overrides={"optimizer.lr": 9e-4}, status="pruned", result_fields=stream("aaa-prefix", samples=160))
    ranking = rank_runs(load_runs([str(tmp_path)]).runs)
    assert len(ranking.groups) == 1
    pruned = next(row for row in ranking.rows if row.run.name.endswith("pruned"))
    assert any("stopped early (pruned)" in flag for flag in pruned.flags)


def test_runs_without_fingerprints_are_ranked_together_and_the_output_says_it_is_unchecked(tmp_path):
    for index in range(2):
        write_run_dir(tmp_path / f"old{index}", synthetic_losses(40, 0.02, 0.02, seed=index), batch_size=4,
                      overrides={"optimizer.lr": 1e-4 * (index + 1)})
    ranking = rank_runs(load_runs([str(tmp_path)]).runs)
    assert len(ranking.groups) == 1 and [row.rank for row in ranking.rows] == [1, 2]
    assert any("no run records its training samples (data_fingerprint)" in note for note in ranking.notes())


def test_beside_fingerprinted_runs_an_unfingerprinted_run_is_its_own_group(tmp_path):
    write_study(tmp_path, stream("aaa"))
    write_run_dir(tmp_path / "old", synthetic_losses(60, 0.3, 0.02, seed=7), batch_size=4, overrides={"optimizer.lr": 1e-2})
    ranking = rank_runs(load_runs([str(tmp_path)]).runs)
    old = next(row for row in ranking.rows if row.run.name.endswith("old"))
    assert old.group == "B" and len(ranking.main_rows) == 4
    assert any("record no data_fingerprint" in note for note in ranking.notes())


def test_a_gap_inside_the_pooled_seed_spread_is_within_noise_even_between_single_runs(tmp_path):
    for seed in (1, 2, 3):  # one setting repeated: its seeds' spread is the study's training noise
        write_run_dir(tmp_path / f"base-seed{seed}", synthetic_losses(60, 0.05, 0.3, seed=seed), batch_size=4,
                      overrides={"optimizer.lr": 1e-3, "trainer.seed": seed})
    close = synthetic_losses(60, 0.2, 0.01, seed=4)
    write_run_dir(tmp_path / "x", close, batch_size=4, overrides={"optimizer.lr": 5e-3})
    write_run_dir(tmp_path / "y", [loss + 0.001 for loss in close], batch_size=4, overrides={"optimizer.lr": 6e-3})
    ranking = rank_runs(load_runs([str(tmp_path)]).runs)
    assert ranking.seed_spread > 0.001
    y = next(row for row in ranking.rows if row.run.name.endswith("/y"))
    assert any(flag.startswith("within noise of #") and "seed spread" in flag for flag in y.flags), y.flags


def test_runs_stopped_early_join_the_shuffled_or_the_file_order_stream_they_trained_on(tmp_path):
    """Both streams share the split and the data seed: trainer.shuffle (in result.json) tells them apart."""
    for order, shuffle in (("shuffled", True), ("file_order", False)):
        for index in range(2):
            write_run_dir(tmp_path / f"{order}{index}", synthetic_losses(40, 0.02 + 0.01 * index, 0.02, seed=index),
                          batch_size=4, overrides={"optimizer.lr": 1e-4 * (index + 1), "trainer.shuffle": shuffle},
                          result_fields={**stream(f"{order}-stream"), "shuffle": shuffle})
        write_run_dir(tmp_path / f"{order}_pruned", synthetic_losses(20, 0.05, 0.02, seed=7), batch_size=4,
                      overrides={"optimizer.lr": 9e-4, "trainer.shuffle": shuffle}, status="pruned",
                      result_fields={**stream(f"{order}-prefix", samples=80), "shuffle": shuffle})
    ranking = rank_runs(load_runs([str(tmp_path)]).runs)
    groups = {row.run.name.rsplit("/", 1)[-1]: row.group for row in ranking.rows}
    assert len(ranking.groups) == 2
    assert groups["shuffled_pruned"] == groups["shuffled0"] == groups["shuffled1"]
    assert groups["file_order_pruned"] == groups["file_order0"] == groups["file_order1"] != groups["shuffled0"]
