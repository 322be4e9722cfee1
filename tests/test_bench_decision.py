"""bench.decision's scoring on a synthetic sweep whose eval losses are known: the figures it prints are
the rank correlation and regret of what the ranking picked, and the runs set apart are counted."""
import pytest

from analysis.synthetic import synthetic_losses, write_run_dir
from bench.decision import score


def test_score_reads_rank_agreement_regret_and_runs_set_apart(tmp_path):
    # four settings, two seeds each: a faster descent ends lower; eval losses agree except the two best swap
    evals = {0.05: (1.30, 1.32), 0.04: (1.28, 1.30), 0.03: (1.50, 1.52), 0.02: (1.60, 1.62)}
    for rate, pair in evals.items():
        for seed, eval_loss in enumerate(pair):
            write_run_dir(tmp_path / f"rate{rate}-seed{seed}", synthetic_losses(60, rate, 0.001, seed=seed), batch_size=4,
                          overrides={"optimizer.lr": rate, "trainer.seed": seed}, eval_loss=eval_loss,
                          result_fields={"data_fingerprint": "aaa", "samples_trained": 240})
    write_run_dir(tmp_path / "other", synthetic_losses(60, 0.09, 0.001, seed=5), batch_size=4,
                  overrides={"optimizer.lr": 0.09}, eval_loss=1.0, result_fields={"data_fingerprint": "bbb", "samples_trained": 240})
    decision = score(tmp_path)
    assert decision.compared == 4 and decision.set_apart == 1 and decision.unranked == 0
    assert decision.spearman_all == pytest.approx(0.8)  # one swap among four: 1 - 6 * 2 / (4 * 15)
    assert decision.eval_rank_of_first == 2
    assert decision.regret == pytest.approx(0.02)
    assert decision.eval_seed_spread == pytest.approx(0.01 * 2 ** 0.5)
    assert decision.regret_in_spreads == pytest.approx(2 ** 0.5)
    assert decision.samples_trained == 9 * 240 and decision.stopped_early == 0
