"""Fine-tuning plans: full, LoRA and QLoRA memory, FLOPs and time on one GPU (issue 15; docs/finetuning.md)."""
