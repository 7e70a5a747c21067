"""From notebook to product: export a Keras model, shrink it to int8, run and time it outside Keras (notebook 10).

Formats (all take images (N, 28, 28, 1) float32 in [0, 1] and give logits (N, 10) float32):

- ONNX (``model.export(path, format="onnx")``, Keras >= 3.8, via tf2onnx under TensorFlow), run by ONNX Runtime
  in Python (:class:`OnnxModel`) and by ONNX Runtime Web in a browser (``web/``);
- LiteRT, the ``.tflite`` format of TensorFlow Lite (``format="litert"``, Keras >= 3.13), run by the
  ``ai-edge-litert`` interpreter (:class:`LiteRTModel`), as on a phone;
- int8 versions: Keras' own ``model.quantize("int8")`` (Dense layers only), ONNX Runtime's static quantization
  (:func:`quantize_onnx`) and LiteRT's full-integer post-training quantization (:func:`export_litert`), both
  calibrated on a few hundred training images.

Two traps (Keras issue #21346, PR #20710): export a float32 model, not a mixed-precision one
(:func:`float32_copy`), and without data-augmentation layers (they become identities there).
"""

from __future__ import annotations

import contextlib
import json
import statistics
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_utils.environment import import_keras_quietly
from fmnist_utils.models import uncompiled_copy

keras = import_keras_quietly()

AUGMENTATION_LAYERS = tuple(
    getattr(keras.layers, name)
    for name in (
        "RandomFlip",
        "RandomTranslation",
        "RandomRotation",
        "RandomZoom",
        "RandomCrop",
        "RandomContrast",
        "RandomBrightness",
        "RandomErasing",
    )
    if hasattr(keras.layers, name)
)


def float32_copy(model: keras.Model) -> keras.Model:
    """The same network with every layer in float32 and the same weights, for export: a model trained in
    mixed precision keeps its layers' ``mixed_bfloat16`` policy when loaded, and exporters expect float32.
    Augmentation layers (``RandomFlip``, ...) become ``Identity`` layers: they do nothing at inference and some
    break ONNX export. The copy is not compiled (:func:`fmnist_utils.models.uncompiled_copy`) and is called once,
    so that it can be exported."""

    def clone(layer: keras.Layer) -> keras.Layer:
        if isinstance(layer, AUGMENTATION_LAYERS):
            return keras.layers.Identity(name=layer.name)
        config = layer.get_config()
        config["dtype"] = "float32"
        return layer.__class__.from_config(config)

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")  # for the layers not cloned by clone(), such as the input layer
    try:
        copy = uncompiled_copy(model, clone_function=clone)
    finally:
        keras.config.set_dtype_policy(previous)
    return _built(copy)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Hide the exporters' chatter: TensorFlow's INFO log lines, tf2onnx's FutureWarning and what the LiteRT
    converter and interpreter print from C++ ("Created TensorFlow Lite XNNPACK delegate")."""
    import logging

    from fmnist_utils.environment import _stderr_to_devnull

    logger = logging.getLogger("tensorflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), _stderr_to_devnull():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        logger.setLevel(level)


def size_mb(path: str | Path) -> float:
    """A file's size on disk in MB (10^6 bytes)."""
    return Path(path).stat().st_size / 1e6


def _built(model: keras.Model) -> keras.Model:
    """The model, called once on zeros if it never was: Keras exports only a model that has been called."""
    if not getattr(model, "_called", True):
        model(np.zeros((1, *model.input_shape[1:]), "float32"))
    return model


def export_onnx(model: keras.Model, path: str | Path) -> Path:
    """Write ``model`` (float32, see :func:`float32_copy`) as ONNX, with a dynamic batch size."""
    model = _built(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _quiet():
        model.export(str(path), format="onnx", verbose=False)
    return path


def export_litert(model: keras.Model, path: str | Path, calibration: np.ndarray | None = None) -> Path:
    """Write ``model`` as LiteRT (``.tflite``). With ``calibration`` images (N, 28, 28, 1), full-integer
    post-training quantization: int8 weights and activations, chosen from the ranges seen on those images (the
    input and output stay float32, so callers do not change)."""
    import tensorflow as tf

    model = _built(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    options: dict[str, Any] = {}
    if calibration is not None:

        def representative() -> Any:
            for image in calibration:
                yield [image[None].astype("float32")]

        options = {"optimizations": [tf.lite.Optimize.DEFAULT], "representative_dataset": representative}
    with _quiet():
        model.export(str(path), format="litert", verbose=False, **options)
    return path


class _Calibration:
    """ONNX Runtime's CalibrationDataReader protocol over images (N, 28, 28, 1), one image per call."""

    def __init__(self, name: str, images: np.ndarray) -> None:
        self.items = iter([{name: image[None].astype("float32")} for image in images])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.items, None)


def quantize_onnx(source: str | Path, path: str | Path, calibration: np.ndarray) -> Path:
    """ONNX Runtime's static int8 quantization of an ONNX model: int8 weights (one scale per output channel) and
    int8 activations with ranges measured on ``calibration`` images (N, 28, 28, 1), in the QDQ format (a
    quantize/dequantize pair around each quantized operator, which runtimes fuse)."""
    import onnxruntime
    from onnxruntime import quantization

    source, path = Path(source), Path(path)
    name = onnxruntime.InferenceSession(str(source), providers=["CPUExecutionProvider"]).get_inputs()[0].name
    prepared = path.with_suffix(".prepared.onnx")
    quantization.quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    try:
        quantization.quantize_static(
            str(prepared),
            str(path),
            _Calibration(name, calibration),
            quant_format=quantization.QuantFormat.QDQ,
            per_channel=True,
            activation_type=quantization.QuantType.QInt8,
            weight_type=quantization.QuantType.QInt8,
        )
    finally:
        prepared.unlink(missing_ok=True)
    return path


class OnnxModel:
    """An ONNX file run by ONNX Runtime on the CPU: ``model(images)`` -> logits (N, 10) float32."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.path = Path(path)
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: np.asarray(images, np.float32)})[0]


class LiteRTModel:
    """A ``.tflite`` file run by the LiteRT interpreter (``ai-edge-litert``): ``model(images)`` -> logits
    (N, 10) float32. The input is resized when the batch size changes (LiteRT plans memory for one shape)."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
        self.input = self.interpreter.get_input_details()[0]["index"]
        self.output = self.interpreter.get_output_details()[0]["index"]
        self.batch = None

    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, np.float32)
        if self.batch != len(images):
            self.interpreter.resize_tensor_input(self.input, images.shape)
            with _quiet():
                self.interpreter.allocate_tensors()
            self.batch = len(images)
        self.interpreter.set_tensor(self.input, images)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output).copy()


def logits_in_batches(model: Callable[[np.ndarray], Any], images: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """Logits (N, 10) float32 of images (N, 28, 28, 1), ``batch_size`` at a time, for any of the callables here
    or a Keras model (called directly, ``training=False``)."""

    def call(batch: np.ndarray) -> np.ndarray:
        if isinstance(model, keras.Model):
            return keras.ops.convert_to_numpy(model(batch, training=False))
        return model(batch)

    return np.concatenate(
        [np.asarray(call(images[i : i + batch_size]), np.float32) for i in range(0, len(images), batch_size)]
    )


def median_ms(function: Callable[[], Any], calls: int, warmup: int = 5) -> float:
    """Median wall time of ``function()`` in milliseconds over ``calls`` calls, after ``warmup`` untimed ones
    (the first calls compile, allocate and fill caches)."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def write_web_model(onnx_path: str | Path, rule: dict[str, Any], folder: str | Path, **facts: Any) -> Path:
    """Copy an exported ONNX model into the web page's ``folder`` as ``model.onnx``, with ``model.json``: the
    decision rule's out-of-distribution settings ``rule`` (notebook 08's sidecar ``ood``), the input name and
    ``facts`` (where the model comes from)."""
    import shutil

    import onnxruntime

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx_path, folder / "model.onnx")
    name = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).get_inputs()[0].name
    sidecar = {"input": name, "ood": rule, **facts}
    (folder / "model.json").write_text(json.dumps(sidecar, indent=2) + "\n")
    return folder / "model.onnx"


BROWSER_RECORD = "results/web/10_browser.json"  # written by tests/test_web.py with FMNIST_RECORD_WEB=1


@dataclass(frozen=True)
class BrowserRun:
    """What the browser test measured on the web page (``web/``): ``photos`` held-out photos classified; of
    them, ``agree`` with the same answer as ``python -m fmnist_utils.photos``, ``agree_ood`` with the same
    out-of-distribution verdict and ``same_image`` with a 28x28 image identical to Python's, ``agree_float32``
    with the same answer as the committed model run in float32 in Python (as the page runs it); ``first_seconds``
    from the start of page load to the first answer, ``ms_per_photo`` afterwards, ``browser``, ``hardware`` and
    ``date``."""

    photos: int
    agree: int
    agree_ood: int
    same_image: int
    agree_float32: int
    first_seconds: float
    ms_per_photo: float
    browser: str
    hardware: str
    date: str

    def summary(self) -> str:
        return (
            f"{self.browser} on {self.hardware} ({self.date}): {self.agree} of {self.photos} held-out photos "
            f"({self.agree / self.photos:.1%}) got the same answer as the Python command, {self.agree_ood} "
            f"({self.agree_ood / self.photos:.1%}) the same out-of-distribution verdict, {self.same_image} "
            f"({self.same_image / self.photos:.1%}) a 28x28 image identical to Python's, {self.agree_float32} "
            f"({self.agree_float32 / self.photos:.1%}) the same answer as the model in float32 in Python; first answer "
            f"{self.first_seconds:.2f} s after the page started loading, then {self.ms_per_photo:.0f} ms per photo"
        )


def browser_record(path: str | Path | None = None) -> BrowserRun | None:
    """The recorded browser run (:data:`BROWSER_RECORD` of the repository), or None when there is none."""
    from fmnist_utils.photos import repository_path

    path = Path(path) if path else repository_path(BROWSER_RECORD)
    return BrowserRun(**json.loads(path.read_text())) if path.is_file() else None
