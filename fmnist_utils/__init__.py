"""Helpers for the Fashion-MNIST notebooks: data, run profiles, models, training callbacks, plots and results.

Modules: ``data`` (load, verify, split, scale), ``profiles`` (FMNIST_PROFILE), ``environment`` (seed,
versions, device: the Setup cell), ``models``, ``wide_resnet``, ``capsules`` (builders and layers),
``augment``, ``schedules``, ``callbacks`` (SWA, training time estimate, batch-norm statistics before
validation), ``gradients`` (per-layer gradient norms), ``evaluation``, ``ensemble`` (greedy ensembles,
calibration), ``tuning`` (KerasTuner search space and hypermodel), ``plots``, ``results``.
"""
