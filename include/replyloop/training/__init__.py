"""LoRA fine-tuning: examples from the curated snapshot, training loop, MLflow logging."""
