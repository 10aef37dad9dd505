"""The pilot's tracks by name: ``game.tracklist`` holds the list syntax, the held-out rule and the loader.

``track_by_name`` stays as the name the pilot's workers load tracks by.
"""

from game.tracklist import load as track_by_name

__all__ = ["track_by_name"]
