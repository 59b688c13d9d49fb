"""Training: the loop (`loop.train_and_evaluate`), pure steps (`steps`), Optax optimizers and
schedules (`optim`), the device mesh (`sharding`), fine-tuning labels (`finetune`)."""
