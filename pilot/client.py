"""``PilotClient(url)``: a served pilot (``python -m pilot.serve``) behind the in-process model's interface.

It has what ``pilot.runtime.PilotModel`` offers a driver, ``version``, ``input_size`` and
``predict(images, speeds) -> Prediction``, so ``pilot.drive`` drives from a URL with the same code as
from a file. Frames travel as PNG (lossless: the server sees exactly the pixels given here, so the
answers equal the in-process model's) in one JSON request per call, over a keep-alive connection.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import httpx
import numpy as np

from pilot.runtime import Prediction


class PilotError(RuntimeError):
    """The service refused a request or has no model; the message is the service's own."""


class PilotClient:
    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout)
        info = self._json(self._http.get("/v1/model"))
        if info["model_version"] is None:
            self.close()
            raise PilotError(f"{self.url} has no model loaded: {info['last_error']}")
        self.version: str = info["model_version"]
        self.input_size: tuple[int, int] = (info["input"]["width"], info["input"]["height"])

    def predict(self, images: np.ndarray, speeds: Any) -> Prediction:
        """Steering and target speed for N frames: ``images`` uint8 (N, H, W, 3) RGB, ``speeds`` m/s (N,).

        ``version`` follows the model that answered (the server may have reloaded a new one).
        """
        from PIL import Image

        images = np.asarray(images)
        speeds = np.asarray(speeds, dtype=np.float64).reshape(-1)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3 or len(images) != len(speeds):
            raise ValueError(f"images must be uint8 (N, H, W, 3) with one speed each, got {images.shape} "
                             f"{images.dtype} and {speeds.shape[0]} speeds")
        frames = []
        for image, speed in zip(images, speeds, strict=True):
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
            frames.append({"image": base64.b64encode(buffer.getvalue()).decode(), "speed": float(speed)})
        answer = self._json(self._http.post("/v1/predict", json={"frames": frames}))
        self.version = answer["model_version"]
        rows = answer["predictions"]
        return Prediction(np.array([r["steering"] for r in rows], dtype=np.float32),
                          np.array([r["target_speed"] for r in rows], dtype=np.float32))

    @staticmethod
    def _json(response: httpx.Response) -> dict:
        if response.status_code >= 400:
            try:
                detail = response.json()["detail"]
            except (ValueError, KeyError):
                detail = response.text[:200]
            raise PilotError(f"{response.request.url}: {response.status_code}: {detail}")
        return response.json()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PilotClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
