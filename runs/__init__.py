"""The run contract: what a training run leaves behind and what a sweep records about it.

Training (sft), the sweeper and the analysis each import this package and never one another, so a name
changed here changes for all three at once: the run-dir file names (`runs.files`), the result.json
fields (`runs.result`), the Optuna user-attr keys (`runs.attrs`), the objective's smoothing
(`runs.smoothing`), the JSON-lines logs (`runs.jsonl`), LLaMA-Factory's loss plot (`runs.loss_plot`),
the opening of a study's storage from its URL (`runs.storage`), the training config's schema
(`runs.schema`: every key's type and range, checked by a run and by a sweep for each trial it plans), the
budget and report-point arithmetic both plan by (`runs.budget`), and how a command ends on an error
(`runs.exits`). It imports no torch.
"""
