"""List the tracks with their baseline lap times, or draw one.

    python -m game.tracks [--json]
    python -m game.tracks --plot hairpins --out hairpins.png
"""

from __future__ import annotations

import argparse
import json
import sys

from game.track import Track, TrackError
from game.tracks import bundled_tracks, load_track


def describe(track: Track) -> dict:
    from game.pursuit import pursuit_lap

    result = pursuit_lap(track)
    return {
        "name": track.name,
        "length_m": round(track.length, 1),
        "width_m": track.width,
        "baseline_lap_s": round(result.lap_time_s, 3) if result.finished else None,
        "description": track.description,
    }


def plot(track: Track, out: str, path=None) -> None:
    """Draw walls, centre line and start line; ``path`` (x, y, speed rows) is coloured by speed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 7))
    for wall in (track.left_wall, track.right_wall):
        closed = np.vstack([wall, wall[:1]])
        ax.plot(closed[:, 0], closed[:, 1], color="black", lw=1.2)
    centre = np.vstack([track.centerline, track.centerline[:1]])
    ax.plot(centre[:, 0], centre[:, 1], color="grey", lw=0.6, ls="--")
    ax.plot(*np.stack([track.left_wall[0], track.right_wall[0]], axis=1), color="red", lw=3, label="start/finish")
    x, y, heading = track.start
    ax.annotate("", xy=(x + 25 * np.cos(heading), y + 25 * np.sin(heading)), xytext=(x, y),
                arrowprops={"arrowstyle": "->", "color": "red"})
    if path is not None:
        points = ax.scatter(path[:, 0], path[:, 1], c=path[:, 2], s=3, cmap="viridis", zorder=3)
        fig.colorbar(points, ax=ax, shrink=0.7, label="speed (m/s)")
    ax.set_aspect("equal")
    ax.set_title(f"{track.name}: {track.length:.0f} m, {track.width:g} m wide")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m game.tracks", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--plot", metavar="TRACK", help="draw this track (name or JSON path)")
    parser.add_argument("--out", default=None, help="PNG file for --plot (default TRACK.png)")
    args = parser.parse_args(argv)
    try:
        if args.plot:
            track = load_track(args.plot)
            out = args.out or f"{track.name}.png"
            plot(track, out)
            print(out)
            return 0
        rows = [describe(load_track(name)) for name in bundled_tracks()]
    except TrackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'track':<10} {'length':>8} {'width':>6} {'baseline':>9}  description")
        for r in rows:
            lap = f"{r['baseline_lap_s']:.2f} s" if r["baseline_lap_s"] else "DNF"
            print(f"{r['name']:<10} {r['length_m']:>6.0f} m {r['width_m']:>4g} m {lap:>9}  {r['description']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
