"""Train the vision pilot on collected datasets, export it to ONNX and write its model card.

    python -m pilot.train datasets/r0 [datasets/r1 ...] --out models/pilot [--epochs 8] [--seed 0]

The net is PilotNet-shaped (NVIDIA's end-to-end driving CNN, scaled to 96x72 frames, ~225k
parameters): five convolutions, the measured speed joins before the dense layers, and two outputs,
steering and target speed / 50. Validation holds out whole tracks (whole episodes when there are
too few tracks): neighbouring frames of one episode are near copies, so a frame-level split would
measure memory, not driving. Training batches are augmented (brightness and contrast, a shift of a
few pixels, a blur) with a generator seeded per (epoch, batch), and Keras runs with op determinism, so
the same data and seed give the same model.

Keras on tensorflow-cpu: it installs from PyPI without CUDA wheels (~335 MB against ~3 GB for the
default torch) and was the fastest CPU trainer measured for this net. The training framework stays
here: ``model.onnx`` (tf2onnx) is what drives and serves, through ``pilot.runtime`` on onnxruntime.
``model.keras`` is kept beside it for fine-tuning.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from game import tracklist
from pilot.card import ModelCard
from pilot.runtime import MODEL_FILE, OUTPUT, SPEED_SCALE, Prediction, keys_from, write_card

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build_model(height: int, width: int):
    """PilotNet for small frames: image (RGB / 255) and speed (m/s / 50) -> [steering, target speed / 50]."""
    import keras
    from keras import layers

    image = keras.Input((height, width, 3), name="image")
    speed = keras.Input((1,), name="speed")
    x = image
    for filters, kernel, stride in ((24, 5, 2), (36, 5, 2), (48, 3, 2), (64, 3, 1), (64, 3, 1)):
        x = layers.Conv2D(filters, kernel, strides=stride, activation="relu")(x)
    x = layers.Concatenate()([layers.Flatten()(x), speed])
    x = layers.Dense(100, activation="relu")(x)
    x = layers.Dropout(0.2)(x)
    x = layers.Dense(50, activation="relu")(x)
    return keras.Model([image, speed], layers.Dense(2, name=OUTPUT)(x), name="pilotnet")


def split_by_track(episode: np.ndarray, track: np.ndarray, share: float, seed: int) -> np.ndarray:
    """A boolean mask of validation frames: whole tracks held out, or whole episodes if under 5 tracks."""
    groups = track if len(np.unique(track)) >= 5 else episode.astype(str)
    names = np.unique(groups)
    rng = np.random.default_rng(seed)
    held = rng.choice(names, size=max(1, round(share * len(names))), replace=False)
    return np.isin(groups, held)


def augment(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness/contrast, a shift of up to 3 px sideways and 2 px up/down (edges repeated), a blur on 1/3."""
    x = images.astype(np.float32) / 255.0
    n = len(x)
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    contrast = rng.uniform(0.75, 1.25, (n, 1, 1, 1)).astype(np.float32)
    brightness = rng.uniform(-0.15, 0.15, (n, 1, 1, 1)).astype(np.float32)
    x = (x - mean) * contrast + mean + brightness
    for i, (dy, dx) in enumerate(rng.integers([-2, -3], [3, 4], (n, 2))):
        x[i] = np.roll(x[i], (dy, dx), axis=(0, 1))
        if dy > 0:
            x[i, :dy] = x[i, dy]
        elif dy < 0:
            x[i, dy:] = x[i, dy - 1]
        if dx > 0:
            x[i, :, :dx] = x[i, :, dx:dx + 1]
        elif dx < 0:
            x[i, :, dx:] = x[i, :, dx - 1:dx]
    blur = rng.random(n) < 1 / 3
    if blur.any():
        b = np.pad(x[blur], ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
        x[blur] = sum(b[:, i:i + x.shape[1], j:j + x.shape[2]] for i in range(3) for j in range(3)) / 9.0
    return np.clip(x, 0.0, 1.0)


def make_batches(images, speed, targets, *, batch: int, seed: int, train: bool):
    """A Keras PyDataset: shuffled, augmented batches for training, fixed ones for validation."""
    import keras

    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=1, use_multiprocessing=False)
            self.epoch = 0
            self.order = self._order()

        def _order(self):
            if not train:
                return np.arange(len(images))
            return np.random.default_rng([seed, self.epoch]).permutation(len(images))

        def __len__(self):
            return int(np.ceil(len(images) / batch))

        def __getitem__(self, i):
            idx = np.sort(self.order[i * batch:(i + 1) * batch])
            if train:
                x = augment(images[idx], np.random.default_rng([seed, self.epoch, i]))
            else:
                x = images[idx].astype(np.float32) / 255.0
            return ({"image": x, "speed": (speed[idx] / SPEED_SCALE).astype(np.float32)[:, None]},
                    targets[idx])

        def on_epoch_end(self):
            self.epoch += 1
            self.order = self._order()

    return Batches()


class KerasPilot:
    """The trained Keras model behind the runtime's ``predict`` interface (to compare with its export)."""

    def __init__(self, model: Any, input_size: tuple[int, int]) -> None:
        self.model = model
        self.input_size = input_size
        self.version = "keras"

    def predict(self, images: np.ndarray, speeds: Any) -> Prediction:
        speeds = np.asarray(speeds, dtype=np.float32).reshape(-1, 1)
        out = self.model({"image": np.asarray(images, np.float32) / np.float32(255.0),
                          "speed": speeds / np.float32(SPEED_SCALE)}, training=False).numpy()
        return Prediction(np.clip(out[:, 0], -1.0, 1.0), np.clip(out[:, 1] * np.float32(SPEED_SCALE), 0.0, SPEED_SCALE))


def export_onnx(model: Any, path: Path, height: int, width: int) -> None:
    """tf2onnx from a traced function, so the graph's inputs and output carry the runtime's names."""
    import tensorflow as tf
    import tf2onnx

    spec = (tf.TensorSpec((None, height, width, 3), tf.float32, name="image"),
            tf.TensorSpec((None, 1), tf.float32, name="speed"))

    @tf.function(input_signature=spec)
    def pilot(image, speed):
        return {OUTPUT: model({"image": image, "speed": speed}, training=False)}

    tf2onnx.convert.from_function(pilot, input_signature=spec, opset=17, output_path=str(path))


def progress_lines(stream: TextIO, epochs: int, every: int = 50):
    """A Keras callback writing plain progress lines to ``stream`` (flushed): one every ``every`` batches
    and one per epoch with its losses, for logs and pipes, where Keras's bar shows nothing for minutes
    (a piped stdout is block-buffered) or one line per epoch only after the epoch ends."""
    import keras

    class Lines(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch, self.t0 = epoch + 1, time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            total = self.params.get("steps")
            if (batch + 1) % every == 0 and (batch + 1) != total:
                print(f"epoch {self.epoch}/{epochs} batch {batch + 1}/{total} loss {logs['loss']:.4f} "
                      f"{time.perf_counter() - self.t0:.0f} s", file=stream, flush=True)

        def on_epoch_end(self, epoch, logs=None):
            numbers = " ".join(f"{k} {v:.4f}" for k, v in (logs or {}).items())
            print(f"epoch {epoch + 1}/{epochs} {numbers} {time.perf_counter() - self.t0:.0f} s",
                  file=stream, flush=True)

    return Lines()


def train(datasets: list[str], out: str | Path, *, epochs: int = 8, batch: int = 128, seed: int = 0,
          val_share: float = 0.1, threads: int = 2, patience: int = 3, verbose: int = 1,
          init: str | Path | None = None, lines: TextIO | None = None) -> ModelCard:
    """Train, export and write the card; returns the card. ``init``: start from this model folder's weights;
    ``lines``: write plain progress lines there (:func:`progress_lines`) instead of Keras's own output."""
    import keras
    import tensorflow as tf

    from pilot.dataset import load

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()

    data = load(datasets)
    height, width = data.images.shape[1:3]
    val = split_by_track(data.episode, data.track, val_share, seed)
    if lines is not None:
        print(f"{len(data)} frames from {len(datasets)} dataset(s): {int((~val).sum())} to train, "
              f"{int(val.sum())} to validate; {epochs} epochs", file=lines, flush=True)
    targets = np.stack([data.steering, data.target_speed / SPEED_SCALE], axis=1).astype(np.float32)
    model = build_model(height, width)
    if init is not None:  # a DAgger round goes on from the last round's model instead of from scratch
        model.set_weights(keras.models.load_model(Path(init) / "model.keras").get_weights())
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse",
                  metrics=[keras.metrics.MeanAbsoluteError(name="mae")])
    train_set = make_batches(data.images[~val], data.speed[~val], targets[~val], batch=batch, seed=seed, train=True)
    val_set = make_batches(data.images[val], data.speed[val], targets[val], batch=256, seed=seed, train=False)
    stop = keras.callbacks.EarlyStopping(patience=patience, restore_best_weights=True)
    t0 = time.perf_counter()
    callbacks = [stop] if lines is None else [stop, progress_lines(lines, epochs)]
    history = model.fit(train_set, validation_data=val_set, epochs=epochs, callbacks=callbacks,
                        verbose=0 if lines is not None else verbose)
    seconds = time.perf_counter() - t0

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model.keras")
    export_onnx(model, out / MODEL_FILE, height, width)
    pilot = KerasPilot(model, (width, height))
    pred = Prediction(*map(np.concatenate, zip(*(
        pilot.predict(data.images[val][i:i + 512], data.speed[val][i:i + 512])
        for i in range(0, int(val.sum()), 512)), strict=True)))
    speed = data.speed[val]
    same_keys = (keys_from(pred.steering, pred.target_speed, speed)
                 == keys_from(data.steering[val], data.target_speed[val], speed)).all(axis=1)
    target_mae = float(np.abs(pred.target_speed - data.target_speed[val]).mean())
    digest = hashlib.sha256((out / MODEL_FILE).read_bytes()).hexdigest()
    trained_frames = int((~val).sum())
    card = ModelCard.model_validate({
        "version": f"{out.name}-{digest[:10]}",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "input": {"width": int(width), "height": int(height), "image": "RGB uint8 / 255, NHWC float32",
                  "speed": "m/s / 50, float32 [N, 1]"},
        "output": {OUTPUT: "[steering in -1..1 (+ = left), target speed / 50]"},
        "architecture": {"name": "pilotnet", "parameters": int(model.count_params())},
        "data": {"datasets": data.sources, "frames": len(data), "train_frames": trained_frames,
                 "validation_frames": int(val.sum()), "validation_tracks": sorted(set(data.track[val])),
                 "tracks": sorted(set(data.track))},
        "training": {"epochs_run": len(history.history["loss"]), "best_epoch": int(np.argmin(
                     history.history["val_loss"])) + 1, "batch": batch, "seed": seed, "seconds": round(seconds, 1),
                     "images_per_s": round(trained_frames * len(history.history["loss"]) / seconds),
                     "initial_weights": str(init) if init else None,
                     "framework": f"keras {keras.__version__} / tensorflow-cpu {tf.__version__}",
                     "augmentation": "brightness, contrast, shift <= 3 px, 3x3 blur on 1/3"},
        "metrics": {"val_loss": round(float(min(history.history["val_loss"])), 5),
                    "val_steering_mae": round(float(np.abs(pred.steering - data.steering[val]).mean()), 4),
                    "val_target_speed_mae_m_s": round(target_mae, 3),
                    "val_same_keys": round(float(same_keys.mean()), 4),
                    "note": "per-frame figures; judge a pilot by full laps (python -m pilot.drive MODEL --pilot)"},
        "history": {k: [round(float(v), 5) for v in vs] for k, vs in history.history.items()},
    })
    write_card(out, card)
    return card


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pilot.train", description=__doc__.split("\n")[0])
    p.add_argument("datasets", nargs="+", help="dataset folders written by python -m pilot.dataset export")
    p.add_argument("--out", required=True, help="model folder: model.onnx, model.json, model.keras")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-share", type=float, default=0.1, help="share of tracks (or episodes) held out")
    p.add_argument("--threads", type=int, default=2, help="TensorFlow intra-op threads")
    p.add_argument("--init", default=None, help="start from this model folder's weights (e.g. the last DAgger round)")
    args = p.parse_args(argv)
    from pilot.dataset import read_manifest

    for path in args.datasets:
        try:
            manifest = read_manifest(Path(path))
            # frames of a held-out track would make every later --pilot evaluation a seen track
            tracklist.check(list(manifest.tracks), tracklist.Purpose.TRAINING)
        except (OSError, ValueError) as exc:
            print(f"error: {path}: {exc}", file=sys.stderr)
            return 2
    if args.init and not (Path(args.init) / "model.keras").is_file():
        print(f"error: --init {args.init} holds no model.keras", file=sys.stderr)
        return 2
    if args.epochs < 1 or args.batch < 1 or not 0.0 < args.val_share < 1.0:
        print("error: --epochs and --batch must be positive and --val-share in (0, 1)", file=sys.stderr)
        return 2
    card = train(args.datasets, args.out, epochs=args.epochs, batch=args.batch, seed=args.seed,
                 val_share=args.val_share, threads=args.threads, verbose=1, init=args.init,
                 lines=None if sys.stdout.isatty() else sys.stderr)
    print(json.dumps({"out": args.out, "version": card.version, **card.metrics,
                      "seconds": card.training["seconds"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
