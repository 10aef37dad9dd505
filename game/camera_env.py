"""The race seen through the game's chase camera: ``RallyRoboPilotCamera-v0``, one car, images in.

This is the ray environment (:class:`game.env.RallyRoboPilotEnv`) with another observation: the
same lap, the same keys, reward, ``terminated``/``truncated`` and ``info["lap"]``, and the same
``reset(options={"poses": ..., "start_offset": ...})``; only what the driver sees changes.

* **Observation** ``Dict(image=Box(0, 255, (H, W, 3), uint8), speed=Box(-15, 50, (1,), float64))``:
  the frame the game's own renderer (:class:`game.scene.UrsinaRenderer`, offscreen, no HUD) draws
  for the car's pose (a function of the pose and the track only: one camera, no roll), and the
  measured speed in m/s. ``frame_size`` is (W, H), 96 x 72 unless told.
* **Action** ``MultiBinary(4)``: forward, back, left, right, as in the ray environment.

Its vector form, :class:`RallyRoboPilotCameraVectorEnv` (``gymnasium.make_vec("RallyRoboPilotCamera-v0",
num_envs=N, vectorization_mode="vector_entry_point")``), is the batched race of the ray vector environment
(:class:`game.env.RallyRoboPilotVectorEnv`) seen through N chase cameras drawn in one pass
(``UrsinaRenderer.draw_many``): observation ``image (N, H, W, 3)``, ``speed (N, 1)``. A car's images, like
its lap, are the same bit for bit alone or in any batch.

Panda3D allows one renderer per process, so environments share one: pass ``renderer=`` (a window
for watching, say), or the first environment of the process opens an offscreen one that every
later environment of that frame size reuses; ``close()`` leaves it open.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv

from game import physics as P
from game.env import DEFAULT_MAX_FRAMES, DEFAULT_STALL_FRAMES, RallyRoboPilotEnv, RallyRoboPilotVectorEnv, action_space
from game.race import LapResult
from game.state import CarView, LapView
from game.track import Track

DEFAULT_FRAME_SIZE = (96, 72)  # (width, height): what the pilot's collection and models use
_shared: dict[str, Any] = {}


def shared_renderer(track: Track, frame_size: tuple[int, int]) -> Any:
    """This process's offscreen renderer (opened on first use; one per process)."""
    renderer = _shared.get("renderer")
    if renderer is None:
        from game.scene import UrsinaRenderer

        renderer = _shared["renderer"] = UrsinaRenderer(track, headless=True, frame_size=frame_size, hud=False)
    if tuple(renderer.frame_size) != tuple(frame_size):
        raise ValueError(f"this process's renderer draws {renderer.frame_size} frames, not {frame_size} "
                         "(one renderer per process)")
    return renderer


def camera_frames(renderer: Any, race: Any) -> np.ndarray:
    """Every car's chase-camera frame ``(n_cars, H, W, 3)``: one offscreen pass for all (a window's renderer
    draws its one car through the window, so it shows what the driver sees)."""
    if renderer.track is not race.track:
        renderer.set_track(race.track)
    if getattr(renderer, "interactive", False):
        if race.n_cars != 1:
            raise ValueError("a window shows one car: use an offscreen renderer for a batch")
        renderer.draw(CarView.of(race), LapView.of(race), race.frame)
        image = renderer.capture()
        if image is None:
            raise RuntimeError("the renderer gave no frame")
        return image[None]
    return renderer.draw_many([CarView.of(race, car) for car in range(race.n_cars)])


def image_space(frame_size: tuple[int, int]) -> spaces.Dict:
    width, height = frame_size
    return spaces.Dict({
        "image": spaces.Box(0, 255, (height, width, 3), dtype=np.uint8),
        "speed": spaces.Box(P.MAX_REVERSE, P.MAX_SPEED, (1,), dtype=np.float64),
    })


class _Cameras:
    """The renderer both camera environments draw with: given, or the process's shared one (Panda3D allows one
    renderer per process), opened on first use at ``frame_size``."""

    track: Track

    def _use_renderer(self, renderer: Any, frame_size: tuple[int, int] | None) -> None:
        if renderer is not None and frame_size is not None and tuple(frame_size) != tuple(renderer.frame_size):
            raise ValueError(f"frame_size {frame_size} differs from the renderer's {renderer.frame_size}")
        self.frame_size = tuple(frame_size or (renderer.frame_size if renderer is not None else DEFAULT_FRAME_SIZE))
        self._renderer = renderer

    @property
    def renderer(self) -> Any:
        if self._renderer is None:
            self._renderer = shared_renderer(self.track, self.frame_size)
        return self._renderer


class RallyRoboPilotCameraEnv(_Cameras, gymnasium.Env):
    """One car, driven from the chase camera's frames and the speed."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": round(1 / P.DT)}

    def __init__(self, *, track: Track | str | None = None, max_frames: int | None = DEFAULT_MAX_FRAMES,
                 stall_frames: int | None = DEFAULT_STALL_FRAMES, continuous: bool = False,
                 frame_size: tuple[int, int] | None = None, renderer: Any = None,
                 render_mode: str | None = None) -> None:
        self.rays = RallyRoboPilotEnv(track=track, max_frames=max_frames, stall_frames=stall_frames,
                                      continuous=continuous)
        self.race = self.rays.race
        self.track = self.rays.track
        self._use_renderer(renderer, frame_size)
        self.render_mode = render_mode
        self.observation_space = image_space(self.frame_size)
        self.action_space = action_space()
        self._image: np.ndarray | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        rays, info = self.rays.reset(seed=seed, options=options)
        return self._observe(rays), info

    def step(self, action: Any):
        rays, reward, terminated, truncated, info = self.rays.step(action)
        return self._observe(rays), reward, terminated, truncated, info

    def render(self) -> np.ndarray | None:
        """``rgb_array``: the last observed frame (the current pose's before the first reset)."""
        if self.render_mode != "rgb_array":
            return None
        return self._image if self._image is not None else self._capture()

    def results(self) -> list[LapResult]:
        return self.rays.results()

    def _observe(self, rays: np.ndarray) -> dict[str, np.ndarray]:
        self._image = self._capture()
        return {"image": self._image, "speed": rays[P.N_RAYS:].copy()}

    def _capture(self) -> np.ndarray:
        return camera_frames(self.renderer, self.race)[0]


class RallyRoboPilotCameraVectorEnv(_Cameras, VectorEnv):
    """``num_envs`` cars on one track, advanced together and seen through their own chase cameras, all drawn
    in one pass: the ray vector environment's batched race with images in. A car whose lap is over is no
    longer drawn (its observation keeps its last frame)."""

    metadata = {"autoreset_mode": AutoresetMode.DISABLED, "render_modes": []}

    def __init__(self, num_envs: int = 1, *, track: Track | str | None = None,
                 max_frames: int | None = DEFAULT_MAX_FRAMES, stall_frames: int | None = DEFAULT_STALL_FRAMES,
                 continuous: bool = False, frame_size: tuple[int, int] | None = None, renderer: Any = None,
                 render_mode: str | None = None) -> None:
        self.rays = RallyRoboPilotVectorEnv(num_envs, track=track, max_frames=max_frames, stall_frames=stall_frames,
                                            continuous=continuous)
        self.race = self.rays.race
        self.track = self.rays.track
        self.num_envs = num_envs
        self._use_renderer(renderer, frame_size)
        self.render_mode = render_mode
        self.single_observation_space = image_space(self.frame_size)
        self.single_action_space = action_space()
        width, height = self.frame_size
        self.observation_space = spaces.Dict({
            "image": spaces.Box(0, 255, (num_envs, height, width, 3), dtype=np.uint8),
            "speed": spaces.Box(P.MAX_REVERSE, P.MAX_SPEED, (num_envs, 1), dtype=np.float64),
        })
        self.action_space = spaces.MultiBinary((num_envs, 4))
        self._images: np.ndarray | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """As the ray vector environment's (``options["poses"]``, ``options["start_offset"]``)."""
        rays, info = self.rays.reset(seed=seed, options=options)
        self._images = None
        return self._observe(rays), info

    def step(self, actions: Any):
        rays, reward, terminated, truncated, info = self.rays.step(actions)
        return self._observe(rays), reward, terminated, truncated, info

    def results(self) -> list[LapResult]:
        return self.rays.results()

    def _observe(self, rays: np.ndarray) -> dict[str, np.ndarray]:
        race = self.race
        live = ~race.done
        if live.all() or self._images is None:
            images = camera_frames(self.renderer, race)
        else:  # a car whose lap is over keeps its last frame; only the others are drawn
            images = self._images.copy()
            cars = np.flatnonzero(live)
            if len(cars):
                images[cars] = self.renderer.draw_many([CarView.of(race, car) for car in cars])
        self._images = images
        return {"image": images, "speed": rays[:, P.N_RAYS:].copy()}
