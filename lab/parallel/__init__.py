"""Splitting one model across workers (chapter 09): tensor parallelism and pipeline parallelism.

Data parallelism (chapters 04-08) copies the whole model to every worker. When a model does not
fit, its layers are split instead: *tensor* parallelism splits each weight matrix (`tensor.py`),
*pipeline* parallelism gives each worker a run of layers and streams micro-batches through them
(`pipeline.py`). Both run on the cluster's engines and are checked against the unsplit model.
"""
