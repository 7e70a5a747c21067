"""Gradients of the loss for one batch, per layer: how strongly each layer is told to change.

Keras 3 has no backend-independent ``gradient`` function (each backend differentiates its own way), so
:func:`kernel_gradient_norms` writes the loss once with ``model.stateless_call`` and asks the backend to
differentiate it: ``tf.GradientTape`` on TensorFlow, ``jax.grad`` on JAX. Nothing in the model changes:
no weight is updated, and batch-normalisation moving statistics are left as they were.
"""

from __future__ import annotations

import keras
import numpy as np


def kernel_gradient_norms(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    layer_type: type[keras.layers.Layer] | tuple[type[keras.layers.Layer], ...] = keras.layers.Conv2D,
) -> dict[str, float]:
    """L2 norm of the gradient of the loss with respect to each layer's kernel, for one batch.

    The loss is the mean sparse categorical cross-entropy of the model's logits, computed in training mode
    (batch normalisation uses the batch's statistics, dropout is active), without regularisation penalties.

    Args:
        model: a Keras model that maps images to logits (N, num_classes).
        x: a batch of inputs, e.g. images (N, 28, 28, 1) float32 in [0, 1].
        y: integer class labels (N,).
        layer_type: which layers to report: those with a ``kernel`` that are instances of it (Conv2D by default).

    Returns:
        ``{layer name: gradient norm}`` in the order of ``model.layers`` (input to output).

    Raises:
        ValueError: no layer of ``layer_type`` with a kernel, ``x`` and ``y`` differ in length, or the backend
            is neither TensorFlow nor JAX.
    """
    chosen = [layer for layer in model.layers if isinstance(layer, layer_type) and hasattr(layer, "kernel")]
    if not chosen:
        raise ValueError(f"{model.name} has no {layer_type} layer with a kernel to take gradients of.")
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} examples but y has {len(y)} labels; pass one label per image.")
    x = np.asarray(x, dtype="float32")
    y = np.asarray(y)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    backend = keras.backend.backend()

    position = {id(variable): i for i, variable in enumerate(model.trainable_variables)}
    trainable = [variable.value for variable in model.trainable_variables]
    non_trainable = [variable.value for variable in model.non_trainable_variables]

    def loss_of(trainable_values):
        # stateless: the batch-norm moving statistics it would update come back as values, and are dropped
        logits, _ = model.stateless_call(trainable_values, non_trainable, x, training=True)
        return loss_fn(y, logits)

    if backend == "tensorflow":
        import tensorflow as tf

        trainable = [tf.convert_to_tensor(value) for value in trainable]
        with tf.GradientTape() as tape:
            tape.watch(trainable)
            loss = loss_of(trainable)
        all_gradients = tape.gradient(loss, trainable)
    elif backend == "jax":
        import jax

        all_gradients = jax.grad(loss_of)(trainable)
    else:
        raise ValueError(
            f"kernel_gradient_norms supports the tensorflow and jax backends, not {backend!r}; "
            "set KERAS_BACKEND=tensorflow or KERAS_BACKEND=jax before importing keras."
        )
    gradients = [all_gradients[position[id(layer.kernel)]] for layer in chosen]
    return {
        layer.name: float(np.linalg.norm(keras.ops.convert_to_numpy(gradient).astype(np.float64)))
        for layer, gradient in zip(chosen, gradients)
    }
