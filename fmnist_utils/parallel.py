"""Data-parallel training over every visible accelerator (notebook 04's ``full`` and ``best`` profiles;
docs/scaling.md).

Each device holds a copy of the model and gets a slice of every batch; the gradients are averaged over the
devices, so one step on N devices with a global batch of N x b computes what one device would compute with a
batch of N x b. The global batch therefore grows with the devices, and so does the learning rate (the linear
scaling rule of Goyal et al., 2017). Keras 3.15 offers ``keras.distribution.DataParallel`` under JAX only; under
TensorFlow the same is done by ``tf.distribute.MirroredStrategy``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DataParallel:
    """How a training run uses the devices: :func:`data_parallel` makes it.

    Attributes:
        devices: the devices trained on, e.g. ``["gpu:0", "gpu:1"]``; one entry means no distribution.
        per_device_batch: images per device and step. backend: the Keras backend.
        strategy: TensorFlow's ``MirroredStrategy`` when it is used, else None.
    """

    devices: list[str]
    per_device_batch: int
    backend: str
    strategy: Any = field(default=None, repr=False)

    @property
    def global_batch(self) -> int:
        """Images per step over all devices."""
        return self.per_device_batch * len(self.devices)

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """Build and compile the model inside it: TensorFlow's strategy scope, nothing otherwise.

        Under JAX :func:`data_parallel` has set the distribution for the whole process already.
        """
        with self.strategy.scope() if self.strategy is not None else contextlib.nullcontext():
            yield

    def describe(self) -> str:
        engine = {
            "jax": "keras.distribution.DataParallel",
            "tensorflow": "tf.distribute.MirroredStrategy",
        }.get(self.backend, "no distribution")
        return (
            f"data-parallel over {len(self.devices)} devices ({', '.join(self.devices)}) with {engine}: "
            f"global batch {self.global_batch} = {len(self.devices)} x {self.per_device_batch}"
        )


def visible_devices(device_type: str | None = None) -> list[str]:
    """The devices the backend sees, e.g. ``["gpu:0", "gpu:1"]``; by default its accelerators, else its CPU(s).

    Args:
        device_type: ``"gpu"``, ``"tpu"`` or ``"cpu"`` to ask for one kind (tests simulate several CPUs).
    """
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        kinds = [device_type.upper()] if device_type else ["GPU", "TPU"]
        for kind in kinds:
            found = tf.config.list_logical_devices(kind)
            if found:
                return [f"{kind.lower()}:{i}" for i in range(len(found))]
        return ["cpu:0"]
    return keras.distribution.list_devices(device_type)


def data_parallel(per_device_batch: int, enabled: bool = True, device_type: str | None = None) -> DataParallel:
    """Train on every visible device when there are several and ``enabled``; otherwise on one, unchanged.

    Under JAX this sets ``keras.distribution.set_distribution(DataParallel(devices=...))`` for the process, so
    every model built afterwards is replicated and every batch sharded; under TensorFlow it creates a
    ``MirroredStrategy`` whose :meth:`DataParallel.scope` the model must be built and compiled in. Prints one
    line when it distributes. Call it before building the model.

    Args:
        per_device_batch: images per device and step; the global batch is this times the devices.
        enabled: False keeps one device whatever is visible (notebook 04's CPU profiles).
        device_type: see :func:`visible_devices`.
    """
    import keras

    backend = keras.backend.backend()
    devices = visible_devices(device_type) if enabled else []
    if len(devices) < 2:
        return DataParallel(devices[:1] or ["default"], per_device_batch, backend)
    strategy = None
    if backend == "jax":
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    elif backend == "tensorflow":
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy([f"/{d}" for d in devices])
    else:
        raise RuntimeError(
            f"{len(devices)} devices are visible, but data-parallel training here supports the jax and "
            f"tensorflow backends, not {backend}; set KERAS_BACKEND=jax, or pass enabled=False."
        )
    plan = DataParallel(devices, per_device_batch, backend, strategy)
    print(plan.describe())
    return plan
