"""The model a run trains: the base model and tokenizer (hub, ModelScope, a local dir, or the `builtin:` tiny
Qwen2 and Qwen2.5 tokenizer built offline so that the quickstart and the tests need no hub), LoRA on top,
and what changes how the model computes without changing what it computes: the attention for
padding-free batches, LoRA dropout that draws the padded batch's masks, and regional compilation. Training
(sft.recipe) and judge both load models through here, so an adapter is evaluated on the model it was
trained on.
"""
