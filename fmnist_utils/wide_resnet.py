"""Wide Residual Networks (WRN) for Fashion-MNIST, written with Keras 3 only.

Reference: Sergey Zagoruyko and Nikos Komodakis, "Wide Residual Networks",
BMVC 2016 (arXiv:1605.07146).

A WRN-d-k has depth ``d = 6n + 4`` and widening factor ``k``:

=========  ==================================  ===========  ===============
group      output size (28x28x1 input)         filters      blocks
=========  ==================================  ===========  ===============
stem       28 x 28                             16           one 3x3 conv
group1     28 x 28                             16 k         n basic blocks
group2     14 x 14                             32 k         n basic blocks
group3      7 x  7                             64 k         n basic blocks
head       10 logits                           -            BN-ReLU, GAP, Dense
=========  ==================================  ===========  ===============

The 6n counts the 3x3 convs of the blocks (3 groups x n blocks x 2 convs);
the "+4" is by convention the stem conv, the final Dense layer and the 1x1
projection convs that start group2 and group3 (group1 also gets one when
``k > 1``, which the naming ignores).

Each basic block is *pre-activation* (He et al., 2016, "Identity Mappings in
Deep Residual Networks")::

    x -> BN -> ReLU -> conv3x3 (stride s) -> BN -> ReLU -> [dropout] -> conv3x3 -> + -> out
    |                                                                             |
    +------------------------------- shortcut ------------------------------------+

The shortcut is the identity, except in the first block of a group when the
number of channels or the spatial size changes: there a 1x1 convolution (with
the same stride) projects the input.  Following the authors' code, that
projection reads the *pre-activated* input (the output of the first BN-ReLU),
so both branches share one BN-ReLU; an identity shortcut reads the raw input.

All functions work on any Keras 3 backend (TensorFlow, JAX, PyTorch).
"""

import math

import keras
from keras import layers

# BatchNormalization settings of the authors' (Torch) code: running statistics
# are updated with momentum 0.1 there, which is momentum=0.9 in Keras'
# convention, so they average roughly the last 1 / (1 - 0.9) = 10 batches.
# The Keras default (0.99, about 100 batches) makes the moving statistics lag
# behind noticeably in short training runs.  Notebook 04 prints both.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def wide_resnet(
    depth: int = 16,
    width: int = 4,
    dropout: float = 0.0,
    num_classes: int = 10,
    input_shape: tuple[int, int, int] = (28, 28, 1),
    weight_decay: float = 5e-4,
    residual: bool = True,
    name: str | None = None,
) -> keras.Model:
    """Build a WRN-``depth``-``width`` that outputs class logits.

    Args:
        depth: Total depth ``6n + 4`` (10, 16, 22, 28, 40, ...); each of the
            three groups gets ``n = (depth - 4) // 6`` basic blocks.
        width: Widening factor ``k``; the groups have 16k, 32k and 64k filters.
        dropout: Dropout rate between the two 3x3 convs of every block
            (the paper uses 0.3 on CIFAR); 0 adds no Dropout layer.
        num_classes: Number of output logits.
        input_shape: Shape of one image, channels last ``(H, W, C)``.
        weight_decay: Weight-decay coefficient as in the paper (5e-4 with
            SGD).  It is applied as an L2 ``kernel_regularizer`` on every conv
            and Dense kernel (not on BN parameters or biases).  Keras'
            ``L2(l)`` adds ``l * sum(w**2)`` to the loss, whose gradient is
            ``2 * l * w``; we use ``L2(weight_decay / 2)`` so the gradient
            contribution is ``weight_decay * w``, exactly SGD's weight decay.
            Pass 0 to disable it, e.g. when training with ``keras.optimizers.AdamW``
            or ``SGD(weight_decay=...)``, which decay weights themselves.
        residual: If False, build the same network without the skip
            additions (a "plain" network of the same depth); it then has no
            projection convs and no Add layers.
        name: Model name; defaults to ``"WRN-{depth}-{width}"``
            (with a ``"plain-"`` prefix when ``residual`` is False).

    Returns:
        A functional ``keras.Model`` mapping images ``(batch, H, W, C)`` to
        float32 logits ``(batch, num_classes)``, also under a mixed-precision
        dtype policy; there is no softmax, so train it
        with ``from_logits=True`` losses.

    Raises:
        ValueError: If ``depth`` is not of the form ``6n + 4`` with n >= 1, or
            ``width`` < 1, or ``dropout`` is not in [0, 1).
    """
    if depth < 10 or (depth - 4) % 6 != 0:
        raise ValueError(f"depth must be 6n+4 (10, 16, 22, 28, 40), got {depth}")
    if width < 1:
        raise ValueError(f"width must be a positive integer, got {width}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")

    blocks_per_group = (depth - 4) // 6
    regularizer = keras.regularizers.L2(weight_decay / 2) if weight_decay > 0 else None
    if name is None:
        name = f"WRN-{depth}-{width}" if residual else f"plain-WRN-{depth}-{width}"

    inputs = keras.Input(shape=input_shape, name="image")
    x = _conv(16, 3, 1, regularizer, name="stem_conv")(inputs)  # (H, W, 16)

    group_filters = (16 * width, 32 * width, 64 * width)
    group_strides = (1, 2, 2)
    for group, (filters, stride) in enumerate(zip(group_filters, group_strides), start=1):
        for block in range(1, blocks_per_group + 1):
            x = preact_block(
                x,
                filters=filters,
                # Only the first block of a group downsamples.
                stride=stride if block == 1 else 1,
                dropout=dropout,
                regularizer=regularizer,
                residual=residual,
                name=f"group{group}_block{block}",
            )

    # Head: (H/4, W/4, 64k) -> (64k,) -> (num_classes,)
    x = _bn(name="final_bn")(x)
    x = layers.ReLU(name="final_relu")(x)
    x = layers.GlobalAveragePooling2D(name="global_avg_pool")(x)
    # The logits stay float32 under a mixed-precision policy ("mixed_bfloat16"), so that
    # the softmax and the loss are computed at full precision.
    outputs = layers.Dense(
        num_classes,
        kernel_regularizer=regularizer,
        dtype="float32",
        name="logits",
    )(x)
    return keras.Model(inputs, outputs, name=name)


def _conv(
    filters: int,
    kernel_size: int,
    stride: int,
    regularizer: keras.regularizers.Regularizer | None,
    name: str,
) -> layers.Conv2D:
    """A bias-free "same"-padded conv with He-normal init (BN follows it)."""
    return layers.Conv2D(
        filters,
        kernel_size,
        strides=stride,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        kernel_regularizer=regularizer,
        name=name,
    )


def _bn(name: str) -> layers.BatchNormalization:
    """BatchNormalization with the momentum and epsilon of the paper's code."""
    return layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)


def preact_block(
    x: keras.KerasTensor,
    filters: int,
    stride: int = 1,
    dropout: float = 0.0,
    regularizer: keras.regularizers.Regularizer | None = None,
    residual: bool = True,
    name: str = "block",
) -> keras.KerasTensor:
    """One pre-activation basic block, ``x + F(x)`` (notebook 04 prints this code).

    ``F`` is BN -> ReLU -> conv 3x3 (stride ``stride``) -> BN -> ReLU -> [dropout] -> conv 3x3. The shortcut
    is ``x`` itself, or, when the block changes the number of channels or the image size, a 1x1 convolution
    with the same stride that reads the pre-activated input (as in the authors' code).

    Args:
        x: Input tensor ``(batch, H, W, C_in)``.
        filters: Output channels ``C_out``.
        stride: Stride of the first 3x3 conv (and of the projection).
        dropout: Dropout rate between the two convs; 0 adds no layer.
        regularizer: Kernel regularizer for the convs, or None.
        residual: Whether to add the shortcut to the conv branch (False: a "plain" block, ``F(x)`` only).
        name: Prefix of the layer names, e.g. ``"group2_block1"``.

    Returns:
        Output tensor ``(batch, ceil(H / stride), ceil(W / stride), C_out)``.
    """
    in_channels = x.shape[-1]
    needs_projection = residual and (stride != 1 or in_channels != filters)

    preactivated = _bn(name=f"{name}_bn1")(x)
    preactivated = layers.ReLU(name=f"{name}_relu1")(preactivated)

    y = _conv(filters, 3, stride, regularizer, name=f"{name}_conv1")(preactivated)
    y = _bn(name=f"{name}_bn2")(y)
    y = layers.ReLU(name=f"{name}_relu2")(y)
    if dropout > 0:
        y = layers.Dropout(dropout, name=f"{name}_dropout")(y)
    y = _conv(filters, 3, 1, regularizer, name=f"{name}_conv2")(y)

    if not residual:
        return y
    if needs_projection:
        # (H, W, C_in) -> (H / stride, W / stride, C_out), from the
        # pre-activated input as in the authors' code.
        shortcut = _conv(filters, 1, stride, regularizer, name=f"{name}_shortcut")(preactivated)
    else:
        shortcut = x
    return layers.Add(name=f"{name}_add")([y, shortcut])


def count_multiply_adds(model: keras.Model) -> int:
    """Count multiply-accumulate operations (MACs) of one forward pass.

    Only ``Conv2D`` and ``Dense`` layers, and custom layers with a
    ``multiply_adds()`` method (the capsule layers), are counted; BatchNormalization,
    activations, pooling, additions and biases are ignored because they
    cost a negligible number of operations in comparison.  One MAC is one
    multiplication plus one addition, so FLOPs are about twice this number.

    * Conv2D: ``H_out * W_out * k_h * k_w * C_in * C_out / groups``
    * Dense: ``in_features * out_features`` (times the number of positions
      when applied to a tensor with more than one non-batch axis)

    Nested models are counted recursively.  Every layer must have been
    called exactly once (as in a functional or Sequential model built on a
    ``keras.Input``), so that its output shape is known.

    Args:
        model: A built Keras model.

    Returns:
        The number of multiply-accumulates for a single input example.
    """
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += count_multiply_adds(layer)
        elif isinstance(layer, (layers.Conv2D, layers.Dense)):
            # Both kernels hold one weight per multiplication at one output
            # position: Conv2D (k_h, k_w, C_in / groups, C_out),
            # Dense (in_features, out_features).
            weights_per_position = math.prod(layer.kernel.shape)
            total += weights_per_position * _output_positions(layer)
        elif hasattr(layer, "multiply_adds"):  # a custom layer that counts its own, e.g. capsules.ClassCapsules
            total += layer.multiply_adds()
    return total


def _output_positions(layer: keras.Layer) -> int:
    """Number of output positions at which a Conv2D or Dense kernel is applied.

    Conv2D: ``H_out * W_out``; Dense on ``(batch, ..., features)``: the
    product of the middle axes (1 for the usual ``(batch, features)``).
    """
    shape = layer.output.shape  # (batch, ...) for one call of the layer
    if isinstance(layer, layers.Conv2D):
        if layer.data_format == "channels_first":  # (batch, C, H, W)
            return shape[2] * shape[3]
        return shape[1] * shape[2]  # (batch, H, W, C)
    return math.prod(shape[1:-1])


def wide_resnet_table(
    configs: list[tuple[int, int]],
    input_shape: tuple[int, int, int] = (28, 28, 1),
) -> list[dict]:
    """Parameter and multiply-add counts of several WRN configurations.

    Each model is built (weights are allocated, nothing is run), so even
    WRN-28-10 takes only a moment.

    Args:
        configs: ``(depth, width)`` pairs, e.g. ``[(16, 4), (28, 10)]``.
        input_shape: Image shape used to build the models.

    Returns:
        One dict per configuration with keys ``"model"`` (e.g. ``"WRN-16-4"``),
        ``"depth"``, ``"width"``, ``"parameters"`` (``model.count_params()``,
        which includes the non-trainable BatchNormalization moving statistics)
        and ``"multiply_adds"`` (per image, see :func:`count_multiply_adds`).
        Ready for ``pandas.DataFrame(rows)``.
    """
    rows = []
    for depth, width in configs:
        model = wide_resnet(depth, width, input_shape=input_shape)
        rows.append(
            {
                "model": f"WRN-{depth}-{width}",
                "depth": depth,
                "width": width,
                "parameters": model.count_params(),
                "multiply_adds": count_multiply_adds(model),
            }
        )
    return rows
