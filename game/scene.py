"""The Ursina front end: builds the 3D scene from track data and renders the simulation's state.

Imported only by ``python -m game`` (never by the simulation core). Ursina renders; it never
advances the game: ``application.calculate_dt`` is off and ``time.dt`` is fixed to 1/25 s, and
each ``draw`` is one ``taskMgr.step()`` after the runner stepped the simulation.

Coordinates: track (x, y) maps to Ursina (x, z); heading h (radians, CCW from +x) maps to
``rotation_y = 90 - degrees(h)``.

Headless (``headless=True``): Panda3D's ``p3headlessgl`` display (EGL + Mesa's software rasteriser,
no X server, no GPU) with an offscreen window. Camera frames for the recorder and ``/v1/frame``
come from an offscreen buffer of ``frame_size`` that sees the 3D scene only (no HUD); the frames of
many cars come from one such buffer per car, all drawn in one pass (``UrsinaRenderer.draw_many``).
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import numpy as np

from game import DT, Track
from game.state import CarView, LapView

SKY = (0.53, 0.74, 0.92)
GRASS = (0.33, 0.55, 0.25)
ROAD = (0.36, 0.36, 0.38)
KERB_A = (0.85, 0.12, 0.1)
KERB_B = (0.95, 0.95, 0.95)
WALL_HEIGHT = 1.2
_prc_done = False


def configure_panda(headless: bool) -> None:
    """Panda3D settings that must be in place before Ursina opens its window."""
    global _prc_done
    if _prc_done:
        return
    from panda3d.core import loadPrcFileData

    lines = ["audio-library-name null", "sync-video false", "notify-level-device fatal",
             "notify-level-display error", "notify-level-pnmimage error"]
    if headless:
        lines += ["load-display p3headlessgl", "aux-display p3headlessgl"]
    for line in lines:
        loadPrcFileData("rrp", line)
    _prc_done = True


def road_mesh_data(track: Track) -> tuple[list, list, list]:
    """Vertices (x, y, z), triangles and colours of the road surface between the walls."""
    left, right = np.asarray(track.left_wall), np.asarray(track.right_wall)
    k = len(left)
    verts = []
    for i in range(k):
        verts.append((float(left[i, 0]), 0.02, float(left[i, 1])))
        verts.append((float(right[i, 0]), 0.02, float(right[i, 1])))
    tris = []
    for i in range(k):
        a, b = 2 * i, 2 * i + 1
        c, d = 2 * ((i + 1) % k), 2 * ((i + 1) % k) + 1
        tris += [(a, b, c), (b, d, c), (a, c, b), (b, c, d)]  # both faces
    shade = [0.96 + 0.04 * math.sin(i * 0.35) for i in range(k)]
    cols = []
    for i in range(k):
        c = tuple(v * shade[i] for v in ROAD) + (1.0,)
        cols += [c, c]
    return verts, tris, cols


def wall_mesh_data(wall: np.ndarray, height: float = WALL_HEIGHT, stripe_m: float = 4.0) -> tuple[list, list, list]:
    """A vertical wall along a closed polyline, striped red/white every ``stripe_m`` metres."""
    wall = np.asarray(wall)
    k = len(wall)
    seg = np.linalg.norm(np.roll(wall, -1, axis=0) - wall, axis=1)
    arc = np.concatenate([[0.0], np.cumsum(seg)[:-1]])
    verts, tris, cols = [], [], []
    for i in range(k):
        j = (i + 1) % k
        base = len(verts)
        (x0, z0), (x1, z1) = wall[i], wall[j]
        verts += [(float(x0), 0.0, float(z0)), (float(x1), 0.0, float(z1)),
                  (float(x1), height, float(z1)), (float(x0), height, float(z0))]
        tris += [(base, base + 1, base + 2), (base, base + 2, base + 3),
                 (base, base + 2, base + 1), (base, base + 3, base + 2)]
        c = KERB_A if int(arc[i] // stripe_m) % 2 == 0 else KERB_B
        top = tuple(min(1.0, v * 1.05) for v in c) + (1.0,)
        low = tuple(v * 0.75 for v in c) + (1.0,)
        cols += [low, low, top, top]
    return verts, tris, cols


def tree_positions(track: Track, n: int = 140, seed: int = 7, clearance: float = 6.0) -> np.ndarray:
    """Seeded scenery positions off the road (at least ``clearance`` metres beyond the walls)."""
    rng = np.random.default_rng(seed)
    c = np.asarray(track.centerline)
    lo, hi = c.min(0) - 60, c.max(0) + 60
    pts = rng.uniform(lo, hi, size=(n * 4, 2))
    d = np.sqrt(((pts[:, None, :] - c[None, ::2, :]) ** 2).sum(-1)).min(1)
    keep = pts[d > track.width / 2 + clearance]
    return keep[:n]


class MeshBuilder:
    """Accumulates coloured boxes, pyramids and quads into one triangle list (one draw call)."""

    def __init__(self):
        self.verts: list[tuple[float, float, float]] = []
        self.tris: list[tuple[int, int, int]] = []
        self.cols: list[tuple[float, float, float, float]] = []

    def quad(self, corners, colour, both=False) -> None:
        n = len(self.verts)
        self.verts += [tuple(map(float, c)) for c in corners]
        self.cols += [(*colour, 1.0)] * 4
        self.tris += [(n, n + 2, n + 1), (n, n + 3, n + 2)]
        if both:
            self.tris += [(n, n + 1, n + 2), (n, n + 2, n + 3)]

    def box(self, cx, cy, cz, sx, sy, sz, colour, yaw=0.0) -> None:
        c, s = math.cos(yaw), math.sin(yaw)

        def p(dx, dy, dz):
            return (cx + dx * c + dz * s, cy + dy, cz - dx * s + dz * c)

        hx, hy, hz = sx / 2, sy / 2, sz / 2
        corners = {(i, j, k): p(i * hx, j * hy, k * hz) for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)}
        shade = {"top": 1.0, "side": 0.8, "end": 0.9}
        faces = [
            ("top", [(-1, 1, -1), (-1, 1, 1), (1, 1, 1), (1, 1, -1)]),
            ("side", [(-1, -1, -1), (-1, -1, 1), (-1, 1, 1), (-1, 1, -1)]),
            ("side", [(1, -1, -1), (1, 1, -1), (1, 1, 1), (1, -1, 1)]),
            ("end", [(-1, -1, -1), (-1, 1, -1), (1, 1, -1), (1, -1, -1)]),
            ("end", [(-1, -1, 1), (1, -1, 1), (1, 1, 1), (-1, 1, 1)]),
        ]
        for kind, idx in faces:
            self.quad([corners[i] for i in idx], tuple(v * shade[kind] for v in colour), both=True)

    def pyramid(self, cx, cy, cz, radius, height, colour, sides=6, phase=0.0) -> None:
        apex = (cx, cy + height, cz)
        ring = [(cx + radius * math.cos(phase + 2 * math.pi * i / sides), cy,
                 cz + radius * math.sin(phase + 2 * math.pi * i / sides)) for i in range(sides)]
        for i in range(sides):
            a, b = ring[i], ring[(i + 1) % sides]
            n = len(self.verts)
            light = 0.75 + 0.25 * math.cos(phase + 2 * math.pi * (i + 0.5) / sides - 0.8)
            col = (*(v * light for v in colour), 1.0)
            self.verts += [a, b, apex]
            self.cols += [col] * 3
            self.tris += [(n, n + 1, n + 2), (n, n + 2, n + 1)]

    def data(self) -> tuple[list, list, list]:
        return self.verts, self.tris, self.cols


def scenery_mesh_data(track: Track, n_trees: int = 140) -> tuple[list, list, list]:
    """Ground, chequered start line, start gantry and trees, all in one mesh."""
    m = MeshBuilder()
    c = np.asarray(track.centerline)
    lo, hi = c.min(0) - 400, c.max(0) + 400
    m.quad([(lo[0], -0.02, lo[1]), (lo[0], -0.02, hi[1]), (hi[0], -0.02, hi[1]), (hi[0], -0.02, lo[1])], GRASS,
           both=True)
    x, y, h = track.start
    fx, fy = math.cos(h), math.sin(h)
    nx, ny = -fy, fx
    squares = 8
    size = track.width / squares
    for i in range(squares):
        for row in range(2):
            a0, a1 = i * size - track.width / 2, (i + 1) * size - track.width / 2
            b0, b1 = (row - 1) * size, row * size
            col = (0.95, 0.95, 0.95) if (i + row) % 2 == 0 else (0.05, 0.05, 0.05)
            corners = ((a0, b0), (a1, b0), (a1, b1), (a0, b1))
            m.quad([(x + nx * a + fx * b, 0.05, y + ny * a + fy * b) for a, b in corners], col, both=True)
    yaw = math.atan2(fy, fx)  # box local x along the road direction
    for side in (-1, 1):
        px, py = x + nx * side * (track.width / 2 + 1.5), y + ny * side * (track.width / 2 + 1.5)
        m.box(px, 4.0, py, 0.5, 8.0, 0.5, (0.25, 0.25, 0.28))
    m.box(x, 8.0, y, 0.6, 0.9, track.width + 3.5, (1.0, 0.5, 0.0), yaw=-yaw)
    rng = np.random.default_rng(11)
    for i, (tx, ty) in enumerate(tree_positions(track, n_trees)):
        hgt = float(rng.uniform(4, 9))
        g = float(rng.uniform(0.75, 1.0))
        m.box(float(tx), hgt * 0.2, float(ty), 0.5, hgt * 0.4, 0.5, (0.4, 0.26, 0.13))
        m.pyramid(float(tx), hgt * 0.3, float(ty), hgt * 0.3, hgt * 0.75, (0.1, 0.35 * g + 0.1, 0.12),
                  sides=5 + i % 3, phase=float(rng.uniform(0, math.pi)))
    return m.data()


class UrsinaRenderer:
    """Draws a ``GameRunner`` state with Ursina; captures camera frames as (H, W, 3) uint8 arrays.

    ``draw`` + ``capture``: the one chase camera (and the window, if any). ``draw_many``: the chase camera's
    frames of many cars on the track at once, offscreen, each car seen only by its own camera, bit for
    bit the frames ``draw`` + ``capture`` give (the batched camera environment and data collection)."""

    def __init__(self, track: Track, *, headless: bool = False, window_size: tuple[int, int] | None = None,
                 frame_size: tuple[int, int] = (320, 240), hud: bool = True, title: str = "RallyRoboPilot"):
        configure_panda(headless)
        from ursina import Ursina, application, color, window

        self.headless = headless
        self.interactive = not headless
        self.frame_size = frame_size
        if window_size is None:
            window_size = frame_size if headless else (1024, 768)
        self.app = Ursina(title=title, window_type="offscreen" if headless else "onscreen",
                          development_mode=False, size=window_size, vsync=False, borderless=False,
                          fullscreen=False)
        application.calculate_dt = False
        import time as _time

        _time.dt = DT  # Ursina's per-frame time: one simulation step
        window.color = color.rgb(*SKY)
        from ursina import camera

        # offscreen windows never send 'aspectRatioChanged', so Ursina would leave the UI lens unsized
        aspect = window_size[0] / window_size[1]
        camera.ui_lens.set_film_size(camera.ui_size * 0.5 * aspect, camera.ui_size * 0.5)
        if not headless:
            try:
                window.fullscreen = False
                window.size = window_size
            except Exception:  # noqa: BLE001 - window managers differ; not essential
                pass
        self._track_entities: list[Any] = []
        self._views: list[tuple[Any, Any, Any, Any]] = []  # draw_many's cameras
        self._build_car()
        self._build_hud(hud)
        self._build_capture()
        self.set_track(track)
        # Ursina asks for Panda3D's generated (Cg) shaders on every entity; Mesa's GL profile cannot run
        # them and Panda3D falls back to the fixed-function pipeline after logging an error. The scene is
        # vertex-coloured and unlit, so ask for the fixed-function pipeline directly.
        self.app.render.setShaderOff(1)
        camera.ui_render.setShaderOff(1)
        if headless:
            # nobody sees the offscreen window: render only the capture buffer (about 2x faster)
            self.app.win.setActive(False)

    # -- scene ---------------------------------------------------------------------------------------
    def set_track(self, track: Track) -> None:
        """(Re)build the static scene of ``track``: a few vertex-coloured meshes, a handful of draw calls."""
        from ursina import Entity, Mesh, destroy

        for e in self._track_entities:
            destroy(e)
        self.track = track
        self._track_entities = [
            Entity(model=Mesh(vertices=v, triangles=t, colors=c), double_sided=False)
            for v, t, c in (road_mesh_data(track), wall_mesh_data(track.left_wall),
                            wall_mesh_data(track.right_wall), scenery_mesh_data(track))
        ]
        # A fixed drawing order (ground, road, walls, then the car): far away the road lies within the depth
        # buffer's precision of the grass, and Panda3D's default bin orders by render-state address, which
        # differs between processes; a fixed order makes the same pose the same image in every process.
        for order, entity in enumerate([self._track_entities[3], *self._track_entities[:3]]):
            entity.setBin("fixed", order)

    def _build_car(self) -> None:
        self.car = self._make_car()

    def _make_car(self) -> Any:
        from ursina import Entity, color

        car = Entity()
        Entity(parent=car, model="cube", color=color.rgb(0.8, 0.08, 0.08), scale=(1.9, 0.6, 4.2), y=0.55)
        Entity(parent=car, model="cube", color=color.rgb(0.15, 0.15, 0.2), scale=(1.6, 0.5, 1.9), y=1.05, z=-0.3)
        Entity(parent=car, model="cube", color=color.rgb(0.95, 0.85, 0.2), scale=(1.9, 0.08, 0.5), y=0.9, z=-2.0)
        for sx in (-1, 1):
            for sz in (-1.35, 1.35):
                Entity(parent=car, model="cube", color=color.rgb(0.05, 0.05, 0.05), scale=(0.35, 0.7, 0.75),
                       position=(sx * 0.95, 0.35, sz))
        car.setBin("fixed", 10)
        return car

    def _build_hud(self, enabled: bool) -> None:
        from ursina import Entity, Text, camera, color

        self.hud = None
        if not enabled:
            return
        from ursina import window

        left = window.top_left[0]
        self.hud_panel = Entity(parent=camera.ui, model="quad", color=color.rgba(0, 0, 0, 0.55), origin=(-0.5, 0.5),
                                scale=(0.62, 0.135), position=(left + 0.01, 0.49, 1))
        self.hud = Text("", parent=camera.ui, position=(left + 0.025, 0.48), scale=1.15, color=color.white)

    def _build_capture(self) -> None:
        from panda3d.core import Texture
        from ursina import Vec3, camera

        w, h = self.frame_size
        self._tex = Texture("frames")
        self._buffer = self.app.win.makeTextureBuffer("frames", w, h, self._tex, True)
        self._buffer.setSort(-100)
        self._buffer.setClearColor((*SKY, 1))
        lens = self.app.camLens.makeCopy()
        lens.setAspectRatio(w / h)
        self._cam = self.app.makeCamera(self._buffer, lens=lens)
        self._cam.reparentTo(camera)
        self.camera = camera
        self._world_up = Vec3(0, 1, 0)
        camera.fov = 70
        lens.setFov(self.app.camLens.getFov())

    # -- many cameras per pass ------------------------------------------------------------------------
    def _build_views(self, capacity: int) -> None:
        """``capacity`` more chase cameras, each with an offscreen buffer of ``frame_size`` and a car of its own.

        Camera ``i`` has camera mask bit ``i + 1`` and sees only car ``i`` (every car is hidden from every
        camera but its own); all see the track. Every buffer has the one-camera path's size, lens and
        viewport, so a pose gives the same image bytes in any of them; one ``renderFrame`` draws them all."""
        from panda3d.core import BitMask32, Texture
        from ursina import Entity

        w, h = self.frame_size
        lens = self._cam.node().getLens()
        for cam in (self._cam, self.app.cam):  # the one-camera path's cameras see only its car ...
            cam.node().setCameraMask(BitMask32.bit(0))
        self.car.hide(BitMask32.allOn())  # ... which the views do not see
        self.car.show(BitMask32.bit(0))
        while len(self._views) < capacity:
            i = len(self._views)
            if i + 1 >= 31:  # bit 31 is Panda3D's overall bit
                raise ValueError("at most 30 cameras per pass")
            tex = Texture(f"view{i}")
            buffer = self.app.win.makeTextureBuffer(f"view{i}", w, h, tex, True)
            buffer.setSort(-98 + i)
            buffer.setClearColor((*SKY, 1))
            pivot = Entity()
            cam = self.app.makeCamera(buffer, lens=lens.makeCopy(), mask=BitMask32.bit(i + 1))
            cam.reparentTo(pivot)
            car = self._make_car()
            car.hide(BitMask32.allOn())
            car.show(BitMask32.bit(i + 1))
            buffer.setActive(False)
            self._views.append((buffer, tex, pivot, car))

    def draw_many(self, cars: list[CarView]) -> np.ndarray:
        """The chase camera's frame of every car in ``cars`` (on this renderer's track), up to 30 drawn in one
        pass of the graphics engine: ``(len(cars), H, W, 3)`` uint8, each the very image :meth:`draw` then
        :meth:`capture` give for that pose (same buffer size, lens and viewport; a car sees only its own car).
        About a third less work per frame than :meth:`draw` + :meth:`capture` (see docs/pilot.md)."""
        n = len(cars)
        w, h = self.frame_size
        out = np.empty((n, h, w, 3), np.uint8)
        for start in range(0, n, 30):
            part = cars[start:start + 30]
            if len(self._views) < len(part):
                self._build_views(len(part))
            for i, (buffer, _, pivot, car) in enumerate(self._views):
                active = i < len(part)
                buffer.setActive(active)
                if active:
                    self._place(car, pivot, part[i])
            window = self.app.win.isActive()
            self._buffer.setActive(False)
            self.app.win.setActive(False)
            try:
                # the graphics engine alone: Ursina's per-frame update (input, every entity's update) has no
                # part in these frames
                self.app.graphicsEngine.renderFrame()
            finally:
                self._buffer.setActive(True)
                self.app.win.setActive(window)
                for view in self._views:
                    view[0].setActive(False)
            for i in range(len(part)):
                tex = self._views[i][1]
                data = np.frombuffer(memoryview(tex.getRamImageAs("RGB")), np.uint8)
                out[start + i] = data.reshape(h, w, 3)[::-1]
        return out

    def _place(self, car: Any, camera: Any, pose: CarView) -> None:
        """Put ``car`` at ``pose`` and ``camera`` behind it (the chase camera: a function of the pose only)."""
        x, z, h = pose.x, pose.y, pose.heading
        car.position = (x, 0, z)
        car.rotation_y = 90 - math.degrees(h)
        back, up = 11.0, 4.5
        camera.position = (x - math.cos(h) * back, up, z - math.sin(h) * back)
        # World up, always: with the camera's own up vector every turn would add roll, and the image
        # would depend on the driving history instead of the car's pose alone.
        camera.look_at((x + math.cos(h) * 6, 1.0, z + math.sin(h) * 6), up=self._world_up)

    # -- per frame -----------------------------------------------------------------------------------
    def draw(self, car: CarView, lap: LapView | None = None, frame: int = 0) -> None:
        """Place the car and the chase camera at ``car``'s pose (all a camera frame depends on); a
        window's HUD shows ``lap`` at ``frame``."""
        self._place(self.car, self.camera, car)
        if self.hud is not None and lap is not None:
            best = f"{lap.best_lap_s:.2f} s" if lap.best_lap_s else "--"
            last = f"{lap.last_lap_s:.2f} s" if lap.last_lap_s else "--"
            self.hud.text = (f"{self.track.name}  lap {lap.laps + 1}  {lap.progress:4.0%}\n"
                             f"time {lap.current_lap_s:6.2f} s   last {last}   best {best}\n"
                             f"speed {abs(car.speed) * 3.6:5.0f} km/h   frame {frame}")
        self.app.taskMgr.step()

    def capture(self) -> np.ndarray | None:
        tex = self._tex
        if not tex.hasRamImage():
            return None
        data = tex.getRamImageAs("RGB")
        img = np.frombuffer(bytes(data), np.uint8).reshape(tex.getYSize(), tex.getXSize(), 3)
        return img[::-1].copy()

    def screenshot(self) -> np.ndarray:
        """The whole window (with HUD) as an (H, W, 3) array."""
        if not self.app.win.isActive():
            self.app.win.setActive(True)
            try:
                self.app.graphicsEngine.renderFrame()
                tex = self.app.win.getScreenshot()
            finally:
                self.app.win.setActive(False)
        else:
            tex = self.app.win.getScreenshot()
        data = tex.getRamImageAs("RGB")
        return np.frombuffer(bytes(data), np.uint8).reshape(tex.getYSize(), tex.getXSize(), 3)[::-1].copy()

    def keyboard(self) -> tuple[bool, bool, bool, bool] | None:
        if self.headless:
            return None
        from ursina import held_keys

        return (bool(held_keys["w"] or held_keys["up arrow"]), bool(held_keys["s"] or held_keys["down arrow"]),
                bool(held_keys["a"] or held_keys["left arrow"]), bool(held_keys["d"] or held_keys["right arrow"]))

    def close(self) -> None:
        with contextlib.suppress(Exception):  # best effort at exit
            self.app.destroy()
