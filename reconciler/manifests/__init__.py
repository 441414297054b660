"""Manifests: loading YAML safely, validating it, and building the desired-state objects.

Data flow: :mod:`.load` (bytes -> documents) -> :mod:`.validate` (documents -> ManifestSet,
using :mod:`.schema` and :mod:`.assetsets`) -> :mod:`.locate` (findings -> file:line problems).
"""
