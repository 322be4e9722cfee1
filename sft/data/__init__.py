"""A run's data: LLaMA-Factory data dirs read with LLaMA-Factory's rules (formats, chat templates, label
masking), tokenized once into a cache shared by every trial, split into train and eval, and read as one
sample stream per study, so every trial of a sweep trains on the same samples in the same order. Nothing
here loads a model: the data path needs only a tokenizer, which is why a bad data set is refused before the
model is loaded, and why judge reads the same held-out split through the same `prepare_datasets` call.
"""
