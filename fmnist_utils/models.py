"""Model builders for notebooks 01-03, and :func:`uncompiled_copy` for saving a trained model.

Each builder returns an uncompiled ``keras.Model`` that maps images (N, 28, 28, 1) in [0, 1] to logits
(N, 10): the softmax lives in the loss (``from_logits=True``) and in :mod:`fmnist_utils.evaluation`.

Under a mixed-precision policy (``"mixed_bfloat16"``, ``"mixed_float16"``) the layers compute in 16 bits,
except the logits layer, which stays float32 (``dtype="float32"``): the softmax and the loss then see
full-precision scores, and bfloat16's 8-bit mantissa does not round small differences between classes away.
"""

from __future__ import annotations

import keras
from keras import layers

INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10


def mlp(hidden_units: tuple[int, ...] = (512, 256), dropout: float = 0.2, name: str = "mlp") -> keras.Model:
    """Multilayer perceptron (notebook 01): flatten the 784 pixels, Dense+ReLU layers with dropout, Dense logits."""
    inputs = keras.Input(INPUT_SHAPE, name="image")
    x = layers.Flatten(name="flatten")(inputs)
    for index, units in enumerate(hidden_units, start=1):
        x = layers.Dense(units, activation="relu", name=f"dense{index}")(x)
        x = layers.Dropout(dropout, name=f"dropout{index}")(x)
    outputs = layers.Dense(NUM_CLASSES, dtype="float32", name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def lenet(
    filters: tuple[int, int] = (6, 16),
    dense_units: tuple[int, int] = (120, 84),
    dropout: float = 0.0,
    name: str = "lenet",
) -> keras.Model:
    """LeNet-5 (LeCun et al. 1998) modernised with ReLU and max-pooling (notebook 02).

    conv 5x5 (``filters[0]``, same padding: 28x28) -> max-pool 2 (14x14) -> conv 5x5 (``filters[1]``, valid: 10x10)
    -> max-pool 2 (5x5) -> Dense ``dense_units[0]`` -> Dense ``dense_units[1]`` -> Dense 10 logits.
    The original used 6 and 16 filters, tanh-like activations and average pooling.
    """
    inputs = keras.Input(INPUT_SHAPE, name="image")
    x = layers.Conv2D(filters[0], 5, padding="same", activation="relu", name="conv1")(inputs)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(filters[1], 5, activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.Flatten(name="flatten")(x)
    for index, units in enumerate(dense_units, start=1):
        x = layers.Dense(units, activation="relu", name=f"dense{index}")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"dropout{index}")(x)
    outputs = layers.Dense(NUM_CLASSES, dtype="float32", name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def conv_bn_relu(x: keras.KerasTensor, filters: int, name: str) -> keras.KerasTensor:
    """3x3 convolution (same padding, no bias: batch norm supplies the shift) -> BatchNormalization -> ReLU."""
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer="he_normal", name=f"{name}_conv")(
        x
    )
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def modern_cnn(
    filters: tuple[int, ...] = (32, 64, 128),
    convs_per_stage: int = 2,
    dense_units: int = 256,
    dropout: float = 0.25,
    head_dropout: float = 0.5,
    name: str = "modern_cnn",
) -> keras.Model:
    """A VGG-style CNN with batch normalisation and dropout (notebook 03).

    For each entry of ``filters``: ``convs_per_stage`` x (conv 3x3 -> BN -> ReLU), then 2x2 max-pooling
    (28 -> 14 -> 7 -> 3 for three stages) and ``dropout``. Head: flatten -> Dense ``dense_units`` -> BN -> ReLU
    -> dropout ``head_dropout`` -> Dense 10 logits.
    """
    inputs = keras.Input(INPUT_SHAPE, name="image")
    x = inputs
    for stage, stage_filters in enumerate(filters, start=1):
        for index in range(1, convs_per_stage + 1):
            x = conv_bn_relu(x, stage_filters, name=f"stage{stage}_{index}")
        x = layers.MaxPooling2D(2, name=f"stage{stage}_pool")(x)
        x = layers.Dropout(dropout, name=f"stage{stage}_dropout")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(dense_units, use_bias=False, kernel_initializer="he_normal", name="dense")(x)
    x = layers.BatchNormalization(name="dense_bn")(x)
    x = layers.Activation("relu", name="dense_relu")(x)
    x = layers.Dropout(head_dropout, name="head_dropout")(x)
    outputs = layers.Dense(NUM_CLASSES, dtype="float32", name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def uncompiled_copy(model: keras.Model, clone_function=None) -> keras.Model:
    """The same network with the same weights, not compiled (notebooks 04 and 10 save such copies).

    ``keras.models.clone_model`` keeps a compiled model's optimizer, and saving a compiled model writes the
    optimizer's state: with Adam, twice the weights again. ``clone_function`` is passed to ``clone_model``
    (e.g. to change each layer's precision policy).
    """
    clone = keras.models.clone_model(model, clone_function=clone_function)
    inputs, outputs = (x[0] if len(x) == 1 else x for x in (clone.inputs, clone.outputs))
    copy = keras.Model(inputs, outputs, name=model.name)
    copy.set_weights(model.get_weights())
    return copy
