"""LoRA supervised fine-tuning: data, chat template and label masking, model + LoRA, Trainer and callbacks."""
