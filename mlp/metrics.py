"""Names of what :func:`mlp.train` measures: one place for every layer that reads them."""

#: the learning curves: train_* every epoch, test_* on evaluation epochs
CURVES = ("train_loss", "train_acc", "test_loss", "test_acc")
#: with ``data.val_size`` > 0, also on evaluation epochs: the held-out validation set
VAL_CURVES = ("val_loss", "val_acc")
#: with ``eval_train``, also on evaluation epochs: the whole training set in evaluation mode
#: (after the epoch's updates, dropout as in evaluation), beside the batches' running means
TRAIN_EVAL_CURVES = ("train_eval_loss", "train_eval_acc")
#: the keys of one history record (eval_time_s on evaluation epochs)
EPOCH = ("epoch", *CURVES, "epoch_time_s", "eval_time_s")
#: a training step's batch metrics, every ``log_every_steps`` steps (step = iteration)
STEP_CURVES = ("batch_train_loss", "batch_train_acc")
