"""The run contract: what a training run leaves behind and what a sweep records about it.

Training (sft), the sweeper and the analysis each import this package and never one another, so a name
changed here changes for all three at once: the run-dir file names (`runs.files`), the result.json
fields (`runs.result`), the Optuna user-attr keys (`runs.attrs`), the objective's smoothing
(`runs.smoothing`), the JSON-lines logs (`runs.jsonl`), LLaMA-Factory's loss plot (`runs.loss_plot`)
and the opening of a study's storage from its URL (`runs.storage`). It imports no torch.
"""
