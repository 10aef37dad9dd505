"""The car model and the compiled step that advances a batch of cars by one fixed frame.

Every car is one row of a float64 state array; the kernel loops over rows and never lets one
car's numbers touch another's, so a car gives bit-identical results alone or in any batch.
The numbers follow the original RallyRoboPilot sports car (see DESIGN.md, "One simulation").
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from game.geometry import cast_ray, nearest_on_centerline

FPS = 25
DT = 1.0 / FPS
MAX_SPEED = 50.0  # m/s
MAX_REVERSE = -15.0  # m/s
ACCELERATION = 25.0  # m/s^2
BRAKING = 50.0  # m/s^2
DRAG = 7.5  # m/s^2 when no key (or both pedals) is held
MIN_TURN_RADIUS = 1.5  # m, at standstill
MAX_TURN_RADIUS = 25.0  # m, at top speed
MIN_TURN_SPEED = 0.5  # m/s
CAR_RADIUS = 1.0  # m, how close the car's centre gets to a wall
N_RAYS = 15
RAY_RANGE = 100.0  # m
RAY_ANGLES = np.linspace(-math.pi / 2, math.pi / 2, N_RAYS)  # right to left, relative to heading
KEYS = ("forward", "back", "left", "right")

# Columns of the per-car state array.
X, Y, HEADING, SPEED, ARC, DISTANCE, CONTACT, COLLISIONS, NEXT_CP, FINISHED, ACTIVE = range(11)
LAP_START, LAST_LAP, BEST_LAP, LAPS, BEST_ARC, BEST_ARC_FRAME, STEER_CHANGES, LAST_STEER = range(11, 19)
N_FIELDS = 19


@njit(cache=True)
def step_cars(state, controls, frame, continuous, stall_frames, track, checkpoints, ray_cos, ray_sin, rays):
    """Advance every active car by one frame (``frame`` is the index of the frame being completed)."""
    cx, cy, seg_len, cum, node_seg, sdf, grid = track
    half_width = grid[5]
    length = grid[6]
    limit = half_width - CAR_RADIUS
    n_cp = checkpoints.shape[0]
    for i in range(state.shape[0]):
        if state[i, ACTIVE] == 0.0:
            continue
        forward, back, left, right = controls[i, 0], controls[i, 1], controls[i, 2], controls[i, 3]
        v = state[i, SPEED]
        if forward and not back:
            v = min(MAX_SPEED, v + (ACCELERATION if v >= 0.0 else BRAKING) * DT)
        elif back and not forward:
            v = max(MAX_REVERSE, v - (BRAKING if v > 0.0 else ACCELERATION) * DT)
        elif v > 0.0:
            v = max(0.0, v - DRAG * DT)
        else:
            v = min(0.0, v + DRAG * DT)

        steer = (1 if left else 0) - (1 if right else 0)
        if steer != state[i, LAST_STEER]:
            state[i, STEER_CHANGES] += 1.0
            state[i, LAST_STEER] = steer
        h = state[i, HEADING]
        speed = abs(v)
        if steer != 0 and speed >= MIN_TURN_SPEED:
            radius = MIN_TURN_RADIUS + (MAX_TURN_RADIUS - MIN_TURN_RADIUS) * (speed / MAX_SPEED) ** 1.5
            # The original turns by atan2(1 - cos t, sin t), which is exactly t / 2.
            turn = 0.5 * speed * DT / radius
            h += steer * turn if v > 0.0 else -steer * turn
            if h > math.pi:
                h -= 2.0 * math.pi
            elif h <= -math.pi:
                h += 2.0 * math.pi
        ch, sh = math.cos(h), math.sin(h)
        x0, y0 = state[i, X], state[i, Y]
        x = x0 + v * ch * DT
        y = y0 + v * sh * DT

        d, s, qx, qy = nearest_on_centerline(x, y, cx, cy, seg_len, cum, node_seg, grid)
        if d > limit:  # the wall: back onto it, lose speed, slide along it
            nx_, ny_ = (x - qx) / d, (y - qy) / d
            x = qx + nx_ * limit
            y = qy + ny_ * limit
            into = ch * nx_ + sh * ny_
            if v * into > 0.0:
                v = 0.5 * v * math.sqrt(max(0.0, 1.0 - into * into))
            if state[i, CONTACT] == 0.0:
                state[i, COLLISIONS] += 1.0
            state[i, CONTACT] = 1.0
        else:
            state[i, CONTACT] = 0.0
        state[i, DISTANCE] += math.sqrt((x - x0) * (x - x0) + (y - y0) * (y - y0))

        prev = state[i, ARC]
        ds = s - (prev - length * math.floor(prev / length))
        if ds > 0.5 * length:
            ds -= length
        elif ds < -0.5 * length:
            ds += length
        cur = prev + ds
        cp = int(state[i, NEXT_CP])
        while cp < n_cp and cur >= checkpoints[cp]:
            cp += 1
        if cp == n_cp and prev < length <= cur:  # forwards over the line after every checkpoint
            crossing = frame - 1 + (length - prev) / (cur - prev)
            lap = crossing - state[i, LAP_START]
            state[i, LAST_LAP] = lap
            state[i, LAPS] += 1.0
            if state[i, BEST_LAP] == 0.0 or lap < state[i, BEST_LAP]:
                state[i, BEST_LAP] = lap
            if continuous:
                cur -= length
                cp = 0
                state[i, LAP_START] = crossing
                state[i, DISTANCE] = 0.0
                state[i, COLLISIONS] = 0.0
                state[i, BEST_ARC] = cur
            else:
                state[i, FINISHED] = 1.0
                state[i, ACTIVE] = 0.0
        if cur > state[i, BEST_ARC]:
            state[i, BEST_ARC] = cur
            state[i, BEST_ARC_FRAME] = frame
        elif stall_frames > 0 and frame - state[i, BEST_ARC_FRAME] >= stall_frames and not continuous:
            state[i, ACTIVE] = 0.0  # no progress for too long: the lap is over, unfinished
        state[i, NEXT_CP] = cp
        state[i, ARC] = cur
        state[i, X] = x
        state[i, Y] = y
        state[i, HEADING] = h
        state[i, SPEED] = v
        sense(state, i, track, ray_cos, ray_sin, rays)


@njit(cache=True)
def sense(state, i, track, ray_cos, ray_sin, rays):
    """Distances along the car's rays to the first wall."""
    sdf, grid = track[5], track[6]
    x, y, h = state[i, X], state[i, Y], state[i, HEADING]
    ch, sh = math.cos(h), math.sin(h)
    for k in range(ray_cos.shape[0]):
        dx = ch * ray_cos[k] - sh * ray_sin[k]
        dy = sh * ray_cos[k] + ch * ray_sin[k]
        rays[i, k] = cast_ray(x, y, dx, dy, RAY_RANGE, sdf, grid)


@njit(cache=True)
def sense_all(state, track, ray_cos, ray_sin, rays):
    for i in range(state.shape[0]):
        sense(state, i, track, ray_cos, ray_sin, rays)
