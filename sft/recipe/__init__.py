"""The training recipe: `train.run_training` builds the run from its config (data, model, batches), trains
with the HF Trainer and this project's callbacks, and saves the adapter, the loss plot and result.json.
What the Trainer does not do itself lives beside it: exact sample and token counts for comparing batch
sizes, batches cut from the study's sample stream (padded, padding-free or packed), reports to a sweep's
trial, and checkpoints that are written whole or not at all.
"""
