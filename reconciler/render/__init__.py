"""Renderers at the edge: one result object, several formats (text, json, markdown, progress).

They format results; they never read the state or the manifests themselves.
"""
