"""Capsule Network with dynamic routing (Sabour, Frosst & Hinton, 2017).

"Dynamic Routing Between Capsules" (https://arxiv.org/abs/1710.09829) replaces
the scalar feature detectors of a CNN with *capsules*: small vectors whose
length is a presence score in [0, 1) for an entity and whose orientation is
meant to encode the entity's pose. The paper calls the length a probability,
but it is not one: nothing makes the lengths of an image sum to 1 (notebook 05).
Lower capsules vote for higher capsules and an iterative
"routing-by-agreement" decides which votes count.

Architecture for a 28x28x1 image (paper values in brackets)::

    image (28, 28, 1)
      -> Conv2D 9x9, stride 1, ReLU [256 filters]        -> (20, 20, 256)
      -> PrimaryCapsules: Conv2D 9x9, stride 2, squash    -> (1152, 8)
         [32 maps of 8-D capsules on a 6x6 grid]
      -> ClassCapsules: dynamic routing [3 iterations]    -> (10, 16)
      -> Length: class scores = capsule lengths           -> (10,)
    Mask (true class while training, longest capsule otherwise) -> (160,)
      -> decoder: Dense 512 ReLU -> 1024 ReLU -> 784 sigmoid -> (28, 28, 1)

Total loss = margin_loss(lengths) + 0.0005 * reconstruction_loss(image).

Typical use::

    train_model, eval_model = capsule_network()
    train_model.compile(
        optimizer="adam",
        loss=[margin_loss, reconstruction_loss],
        loss_weights=[1.0, RECONSTRUCTION_WEIGHT],
        metrics=[["accuracy"], []],
    )
    train_model.fit([x, y_onehot], [y_onehot, x], ...)
    lengths, reconstructions = eval_model.predict(x)

The two models share every layer, so training ``train_model`` also trains
``eval_model``. The decoder is the sub-model ``eval_model.get_layer("decoder")``
and ``capsule_routing`` exposes the class capsules and coupling coefficients
of a trained model for plotting.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

#: Weight of the reconstruction loss in the total loss (paper, section 4.1).
RECONSTRUCTION_WEIGHT = 0.0005


def squash(s, axis: int = -1, epsilon: float = 1e-7):
    """Squashing non-linearity, equation (1) of the paper.

    v = |s|^2 / (1 + |s|^2) * s / |s|

    Short vectors shrink to almost zero length and long vectors to just
    below 1, while the direction is unchanged. ``epsilon`` inside the square
    root keeps the zero vector (and its gradient) finite: squash(0) = 0.

    Args:
        s: tensor of capsule vectors, e.g. (batch, num_capsules, capsule_dim).
        axis: axis holding the capsule's components.
        epsilon: small constant for numerical safety.

    Returns:
        Tensor with the shape of ``s``; vector norms along ``axis`` in [0, 1).
    """
    squared_norm = ops.sum(ops.square(s), axis=axis, keepdims=True)
    scale = squared_norm / (1.0 + squared_norm) / ops.sqrt(squared_norm + epsilon)
    return scale * s


@keras.saving.register_keras_serializable(package="fmnist_utils")
class PrimaryCapsules(keras.layers.Layer):
    """Convolutional capsule layer: a Conv2D whose channels are cut into capsules.

    The convolution produces ``capsule_maps * capsule_dim`` channels. Every
    spatial position of every map is one ``capsule_dim``-dimensional capsule,
    so (20, 20, 256) -> conv 9x9 stride 2 -> (6, 6, 32 * 8)
    -> (6 * 6 * 32, 8) = (1152, 8) capsules, each squashed.

    Input shape: (batch, height, width, channels).
    Output shape: (batch, num_capsules, capsule_dim) with
    num_capsules = out_height * out_width * capsule_maps.
    """

    def __init__(
        self,
        capsule_maps: int = 32,
        capsule_dim: int = 8,
        kernel_size: int = 9,
        strides: int = 2,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.capsule_maps = capsule_maps
        self.capsule_dim = capsule_dim
        self.kernel_size = kernel_size
        self.strides = strides
        self.conv = keras.layers.Conv2D(
            filters=capsule_maps * capsule_dim,
            kernel_size=kernel_size,
            strides=strides,
            padding="valid",
            name="conv",
        )

    def build(self, input_shape: tuple) -> None:
        self.conv.build(input_shape)
        _, height, width, _ = self.conv.compute_output_shape(input_shape)
        self.num_capsules = height * width * self.capsule_maps

    def multiply_adds(self) -> int:
        """Multiply-adds per image of the convolution (for ``wide_resnet.count_multiply_adds``)."""
        return int(np.prod(self.conv.kernel.shape)) * self.num_capsules // self.capsule_maps

    def call(self, inputs):
        # The convolution computes in the global policy (e.g. bfloat16); the squash in this layer's own dtype,
        # float32 in capsule_network, where a 16-bit squared norm of a short capsule would round to zero.
        features = ops.cast(self.conv(inputs), self.compute_dtype)  # (batch, h, w, maps * dim)
        capsules = ops.reshape(features, (-1, self.num_capsules, self.capsule_dim))
        return squash(capsules)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            capsule_maps=self.capsule_maps,
            capsule_dim=self.capsule_dim,
            kernel_size=self.kernel_size,
            strides=self.strides,
        )
        return config


@keras.saving.register_keras_serializable(package="fmnist_utils")
class ClassCapsules(keras.layers.Layer):
    """Fully connected capsule layer with routing-by-agreement (the paper's DigitCaps).

    Every input capsule u_i predicts every output capsule j through its own
    transformation matrix: u_hat_{j|i} = W_ij u_i. The routing procedure
    (Procedure 1 of the paper) then repeats ``routings`` times:

        c_i   = softmax_j(b_i)                   coupling coefficients
        s_j   = sum_i c_ij u_hat_{j|i}
        v_j   = squash(s_j)
        b_ij += u_hat_{j|i} . v_j                 (skipped after the last pass)

    The routing logits b start at zero for every sample on every call, so the
    output depends only on the weights and the input (it is deterministic).

    The predictions u_hat are wrapped in ``ops.stop_gradient`` in every pass
    but the last, and the routing logits are built only from those passes. The
    backward pass therefore treats the coupling coefficients as constants: the
    gradient reaches W only through the predictions u_hat of the last weighted
    sum. XifengGuo/CapsNet-Keras does the same; the paper's reference code
    (Sarasra/models, research/capsules) back-propagates through every iteration.

    Input shape: (batch, num_in, in_dim).
    Output shape: (batch, num_capsules, capsule_dim), plus the coupling
    coefficients (batch, num_in, num_capsules) when ``return_coupling=True``.
    """

    def __init__(
        self,
        num_capsules: int = 10,
        capsule_dim: int = 16,
        routings: int = 3,
        kernel_initializer: str | keras.initializers.Initializer = "glorot_uniform",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if routings < 1:
            raise ValueError(f"routings must be at least 1, got {routings}")
        self.num_capsules = num_capsules
        self.capsule_dim = capsule_dim
        self.routings = routings
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape: tuple) -> None:
        _, num_in, in_dim = input_shape
        # One (capsule_dim x in_dim) matrix per (input capsule, output capsule) pair.
        self.kernel = self.add_weight(
            name="kernel",
            shape=(num_in, self.num_capsules, self.capsule_dim, in_dim),
            initializer=self.kernel_initializer,
        )

    def multiply_adds(self) -> int:
        """Multiply-adds per image: the predictions u_hat, then per routing pass the weighted sum and the
        agreement (for ``wide_resnet.count_multiply_adds``)."""
        num_in, num_capsules, capsule_dim, in_dim = self.kernel.shape
        predictions = num_in * num_capsules * capsule_dim * in_dim
        return predictions + (2 * self.routings - 1) * num_in * num_capsules * capsule_dim

    def call(self, inputs, return_coupling: bool = False):
        """Route ``inputs`` (batch, num_in, in_dim) to the output capsules.

        Returns:
            v (batch, num_capsules, capsule_dim), or the pair (v, c) with the
            final coupling coefficients c (batch, num_in, num_capsules) when
            ``return_coupling`` is True.
        """
        # Prediction vectors u_hat[b, i, j] = W[i, j] @ u[b, i]: (batch, num_in, num_capsules, capsule_dim)
        u_hat = ops.einsum("ijdk,bik->bijd", self.kernel, inputs)
        # Routing logits b: (batch, num_in, num_capsules) start at zero, so the first coupling,
        # softmax(0), is uniform: 1 / num_capsules. The first pass uses that directly, as one weight
        # per input capsule, instead of a softmax of a zero (batch, num_in, num_capsules) tensor,
        # which XLA would constant-fold at compile time, slowly for large batches.
        logits = coupling = None
        for iteration in range(self.routings):
            last = iteration == self.routings - 1
            predictions = u_hat if last else ops.stop_gradient(u_hat)
            if logits is None:
                uniform = ops.full((ops.shape(u_hat)[1],), 1 / self.num_capsules, dtype=u_hat.dtype)
                outputs = squash(ops.einsum("i,bijd->bjd", uniform, predictions))
            else:
                coupling = ops.softmax(logits, axis=2)  # each input capsule splits its vote over the outputs
                outputs = squash(ops.einsum("bij,bijd->bjd", coupling, predictions))
            if not last:
                # Agreement: dot product between each prediction and the output it predicts.
                agreement = ops.einsum("bijd,bjd->bij", predictions, outputs)
                logits = agreement if logits is None else logits + agreement
        if return_coupling:
            if coupling is None:  # routings == 1: the uniform coupling
                coupling = ops.ones_like(u_hat[..., 0]) / self.num_capsules
            return outputs, coupling
        return outputs

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            num_capsules=self.num_capsules,
            capsule_dim=self.capsule_dim,
            routings=self.routings,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config


@keras.saving.register_keras_serializable(package="fmnist_utils")
class Length(keras.layers.Layer):
    """Length (Euclidean norm) of each capsule, used as the class score.

    Input shape: (batch, num_capsules, capsule_dim).
    Output shape: (batch, num_capsules), values in [0, 1) after ``squash``.
    """

    def __init__(self, epsilon: float = 1e-12, **kwargs) -> None:
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def call(self, inputs):
        # epsilon keeps the gradient of the norm finite for a zero capsule. It is
        # tiny because an untrained network has capsule lengths around 1e-7 and a
        # larger epsilon would swamp (and tie) those class scores.
        return ops.sqrt(ops.sum(ops.square(inputs), axis=-1) + self.epsilon)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(epsilon=self.epsilon)
        return config


@keras.saving.register_keras_serializable(package="fmnist_utils")
class Mask(keras.layers.Layer):
    """Keep one class capsule, zero the others and flatten for the decoder.

    Call as ``Mask()(capsules, labels)`` during training (keeps the capsule of
    the true class) or ``Mask()(capsules)`` at inference (keeps the longest
    capsule, i.e. the predicted class).

    Input shapes: capsules (batch, num_capsules, capsule_dim);
    labels (batch, num_capsules), one-hot, optional.
    Output shape: (batch, num_capsules * capsule_dim).
    """

    def call(self, capsules, labels=None):
        num_capsules, capsule_dim = capsules.shape[1], capsules.shape[2]
        if labels is None:
            lengths = ops.sum(ops.square(capsules), axis=-1)
            labels = ops.one_hot(ops.argmax(lengths, axis=-1), num_capsules)
        masked = capsules * ops.expand_dims(ops.cast(labels, capsules.dtype), -1)
        return ops.reshape(masked, (-1, num_capsules * capsule_dim))


@keras.saving.register_keras_serializable(package="fmnist_utils")
def margin_loss(
    y_true,
    lengths,
    m_plus: float = 0.9,
    m_minus: float = 0.1,
    lam: float = 0.5,
):
    """Margin loss, equation (4) of the paper.

    L_k = T_k max(0, m+ - |v_k|)^2 + lam (1 - T_k) max(0, |v_k| - m-)^2

    Args:
        y_true: one-hot labels T, shape (batch, num_classes).
        lengths: capsule lengths |v|, shape (batch, num_classes).

    Returns:
        Per-sample loss sum_k L_k, shape (batch,). Keras averages it over the
        batch when it is used as a compiled loss.
    """
    y_true = ops.cast(y_true, lengths.dtype)
    present = y_true * ops.square(ops.relu(m_plus - lengths))
    absent = lam * (1.0 - y_true) * ops.square(ops.relu(lengths - m_minus))
    return ops.sum(present + absent, axis=-1)


@keras.saving.register_keras_serializable(package="fmnist_utils")
def reconstruction_loss(y_true, y_pred):
    """Sum of squared pixel errors per image.

    Args:
        y_true, y_pred: images, shape (batch, height, width, channels).

    Returns:
        Per-image sum of squared errors, shape (batch,). As a compiled loss
        Keras averages it over the batch; weight it by
        ``RECONSTRUCTION_WEIGHT`` (0.0005) as in the paper.
    """
    y_true = ops.cast(y_true, y_pred.dtype)
    return ops.sum(ops.square(y_true - y_pred), axis=(1, 2, 3))


def capsule_network(
    input_shape: tuple[int, int, int] = (28, 28, 1),
    num_classes: int = 10,
    conv_filters: int = 256,
    capsule_maps: int = 32,
    capsule_dim: int = 8,
    class_capsule_dim: int = 16,
    routings: int = 3,
    decoder_units: Sequence[int] = (512, 1024),
) -> tuple[keras.Model, keras.Model]:
    """Build the CapsNet of the paper; defaults give the paper's architecture.

    Returns:
        ``(train_model, eval_model)`` sharing all layers.

        train_model: inputs [image (batch, *input_shape), one-hot label
        (batch, num_classes)] -> [lengths (batch, num_classes), reconstruction
        (batch, *input_shape)]; the decoder sees the true-class capsule.

        eval_model: image -> [lengths, reconstruction]; the decoder sees the
        predicted (longest) capsule.

    Layers are named "conv1", "primary_caps", "class_caps", "length" and
    "decoder" (a ``keras.Sequential`` taking (batch, num_classes *
    class_capsule_dim) masked capsules).
    """
    image = keras.Input(shape=input_shape, name="image")
    label = keras.Input(shape=(num_classes,), name="label")

    # Under a mixed-precision policy the convolutions and the decoder's hidden layers compute in 16 bits; the
    # capsule layers stay float32: squash, routing and Length divide by and take roots of small norms, and
    # Length's epsilon (1e-12) is zero in float16.
    capsule_dtype = "float32"
    features = keras.layers.Conv2D(conv_filters, 9, strides=1, activation="relu", name="conv1")(image)
    primary = PrimaryCapsules(capsule_maps, capsule_dim, dtype=capsule_dtype, name="primary_caps")(features)
    class_caps = ClassCapsules(num_classes, class_capsule_dim, routings, dtype=capsule_dtype, name="class_caps")(
        primary
    )
    lengths = Length(dtype=capsule_dtype, name="length")(class_caps)

    decoder = keras.Sequential(
        [keras.Input(shape=(num_classes * class_capsule_dim,))]
        + [keras.layers.Dense(units, activation="relu") for units in decoder_units]
        + [
            keras.layers.Dense(int(np.prod(input_shape)), activation="sigmoid", dtype="float32"),
            keras.layers.Reshape(input_shape, dtype="float32"),
        ],
        name="decoder",
    )

    train_reconstruction = decoder(Mask(dtype=capsule_dtype, name="mask_true_class")(class_caps, label))
    eval_reconstruction = decoder(Mask(dtype=capsule_dtype, name="mask_predicted_class")(class_caps))

    train_model = keras.Model([image, label], [lengths, train_reconstruction], name="capsnet_train")
    eval_model = keras.Model(image, [lengths, eval_reconstruction], name="capsnet_eval")
    return train_model, eval_model


def length_logits_model(model: keras.Model, epsilon: float = 1e-7) -> keras.Model:
    """Image (batch, 28, 28, 1) -> log capsule lengths (batch, num_classes), for tools that expect logits.

    The rest of the repository (``evaluation``, ``results.save_predictions``) turns a model's logits
    into probabilities with a softmax. Softmax of log lengths is the lengths divided by their sum,
    so the predicted class is the longest capsule and the "probabilities" are each capsule's share of
    the total length: a display convention, not a calibrated probability (margin loss trains every
    length on its own). ``epsilon`` keeps the log finite for a zero-length capsule.

    Args:
        model: either model returned by ``capsule_network`` (or a reloaded one); it shares its weights.
    """
    lengths = model.get_layer("length").output
    return keras.Model(model.inputs[0], ops.log(ops.maximum(lengths, epsilon)), name="capsnet_length_logits")


def primary_capsules(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """Primary capsules (batch, num_primary_capsules, capsule_dim) of a few images, e.g. (1, 1152, 8) in the paper.

    Calls the layers directly rather than building a sub-model for ``predict``: meant for a handful of
    images, and under TensorFlow every new sub-model's ``predict`` traces a function of its own.

    Args:
        model: either model returned by ``capsule_network`` (or a reloaded one).
        images: (batch, height, width, channels).
    """
    features = model.get_layer("conv1")(ops.convert_to_tensor(images))
    return ops.convert_to_numpy(model.get_layer("primary_caps")(features))


def capsule_routing(model: keras.Model, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class capsules and final coupling coefficients of a (trained) CapsNet.

    Args:
        model: either model returned by ``capsule_network`` (or a reloaded one).
        images: (batch, height, width, channels).

    Returns:
        capsules (batch, num_classes, class_capsule_dim) and coupling
        coefficients c (batch, num_primary_capsules, num_classes), e.g.
        (1, 1152, 10) for one image with the paper's architecture.
    """
    primary = ops.convert_to_tensor(primary_capsules(model, images))
    capsules, coupling = model.get_layer("class_caps")(primary, return_coupling=True)
    return ops.convert_to_numpy(capsules), ops.convert_to_numpy(coupling)


def routing_decisions(
    model: keras.Model, images: np.ndarray, routings: Sequence[int], batch_size: int = 500
) -> np.ndarray:
    """Predicted class (the longest class capsule) after each number of routing passes, same trained weights.

    Routing starts from zero logits on every call, so ``r`` passes compute exactly the first ``r``
    iterations of a longer routing: row k answers "what would the network predict if routing stopped
    after ``routings[k]`` iterations?" without retraining (notebook 05).

    Args:
        model: either model returned by ``capsule_network`` (or a reloaded one).
        images: (batch, height, width, channels).
        routings: the numbers of passes to compare, e.g. (1, 2, 3).
        batch_size: images routed at once (memory grows with batch x primary capsules x classes x 16).

    Returns:
        class indices (len(routings), batch), int64.
    """
    trained = model.get_layer("class_caps")
    layers = []
    for passes in routings:
        layer = ClassCapsules.from_config({**trained.get_config(), "routings": passes})
        layer.build(trained.input.shape)
        layer.set_weights(trained.get_weights())
        layers.append(layer)
    decisions = []
    for start in range(0, len(images), batch_size):
        primary = ops.convert_to_tensor(primary_capsules(model, images[start : start + batch_size]))
        lengths = [np.linalg.norm(ops.convert_to_numpy(layer(primary)), axis=-1) for layer in layers]
        decisions.append(np.stack([length.argmax(axis=1) for length in lengths]))
    return np.concatenate(decisions, axis=1)


def perturb_capsule(capsules: np.ndarray, class_index: int, dim: int, deltas: Sequence[float]) -> np.ndarray:
    """Decoder inputs for the paper's perturbation figure (section 5.1).

    Keeps only capsule ``class_index`` (as ``Mask`` does) and adds each value
    of ``deltas`` to its component ``dim``, e.g. ``deltas=np.linspace(-0.25,
    0.25, 11)``.

    Args:
        capsules: class capsules of one image, (num_classes, capsule_dim).
        class_index: which capsule to keep and perturb.
        dim: which of its components to change.
        deltas: offsets to add.

    Returns:
        Masked, flattened capsules (len(deltas), num_classes * capsule_dim)
        ready for ``model.get_layer("decoder").predict``.
    """
    num_classes, capsule_dim = capsules.shape
    masked = np.zeros((len(deltas), num_classes, capsule_dim), dtype=np.float32)
    masked[:, class_index] = capsules[class_index]
    masked[:, class_index, dim] += np.asarray(deltas, dtype=np.float32)
    return masked.reshape(len(deltas), num_classes * capsule_dim)
