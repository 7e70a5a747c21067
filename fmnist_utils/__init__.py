"""Helpers for the Fashion-MNIST notebooks: data, run profiles, models, training callbacks, plots and results.

Modules: ``data`` (load, verify, split, scale), ``profiles`` (FMNIST_PROFILE), ``environment`` (seed,
versions, device: the Setup cell), ``models``, ``wide_resnet``, ``capsules`` (builders and layers),
``augment``, ``schedules``, ``callbacks`` (SWA, training time estimate), ``gradients`` (per-layer gradient
norms), ``evaluation``, ``plots``, ``results``.
"""
