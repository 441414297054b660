"""Transforms: what a platform receives when its rule asks for more than the master.

``recipe`` resolves transform rules into a recipe and a rendition id; ``images`` (Pillow)
and ``video`` (ffmpeg) make the media steps, ``crypto`` the encryption; ``renditions`` runs a
recipe and keeps its output in a content-addressed, size-bounded cache.
"""

from __future__ import annotations

from reconciler.errors import ReconcilerError


class TransformError(ReconcilerError):
    """A rendition could not be made: a master that cannot be read, a codec ffmpeg does not
    know, a missing key. Permanent: the job fails with this message and nothing is
    uploaded."""
