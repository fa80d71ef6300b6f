"""Names of what :func:`mlp.train` measures: one place for every layer that reads them."""

#: the learning curves: train_* every epoch, test_* on evaluation epochs
CURVES = ("train_loss", "train_acc", "test_loss", "test_acc")
#: the keys of one history record (eval_time_s on evaluation epochs)
EPOCH = ("epoch", *CURVES, "epoch_time_s", "eval_time_s")
