"""LoRA supervised fine-tuning: one training run, from a config to a run dir with result.json.

One subpackage per concern; each module has one job:

- `sft.data`: from LLaMA-Factory data dirs to the tokenized samples a run trains on, in a fixed order.
  `prepare` (load, tokenize once into the cache, split off eval), `formats` (dataset_info.json, alpaca
  and sharegpt), `template` (chat templates and LLaMA-Factory's label masking), `slot_encoder` (the token
  ids of template slots, through tiktoken where it is exact), `stream` (one sample order per study),
  `build_once` (a cached artefact built once across processes), `demo_data` (the project's generated demo
  data, `python -m sft.data.demo_data data/`).
- `sft.model`: the model a run trains. `load` (base model, tokenizer and LoRA), `tiny_model` and
  `qwen_vocab` (the `builtin:` model and tokenizer built offline), `attention` (attention for
  padding-free batches), `lora_dropout` (padding-free LoRA dropout that draws the padded masks), `compile`
  (trainer.compile: regional compilation of the decoder layers).
- `sft.recipe`: the training itself. `train` (the recipe, top to bottom: `run_training`), `trainer` (the
  HF Trainer with exact sample counts and the study's sample stream), `callbacks` (run-dir logs, sweep
  reports, the progress bar), `batching` and `collate` (padded, padding-free or packed batches),
  `checkpoints` (atomic checkpoints and a verified resume).
- `sft.lifecycle`: how a run starts and ends. `preflight` (the checks before torch is imported),
  `stop_signals` and `interruption` (SLURM's and the scheduler's stop signals: checkpoint and stop),
  `ending` (result.json whatever the end), `errors` (the errors a user can fix), `output_dir` (the Hydra
  callback that refuses an output dir that cannot be made).
"""
