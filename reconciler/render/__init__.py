"""Renderers at the edge: one result object, several formats.

:mod:`~reconciler.render.formats` maps each ``--output`` to a renderer of
:mod:`~reconciler.render.text`, :mod:`~reconciler.render.json`,
:mod:`~reconciler.render.markdown` or :mod:`~reconciler.render.tables` (sharing the sentences
of :mod:`~reconciler.render.phrases` and the colours of :mod:`~reconciler.render.style`);
:mod:`~reconciler.render.progress` shows an apply while it runs. The CLI and the watcher call
them. They format results; they never read the state or the manifests themselves, never print
(the progress observers write through the function they are given) and never import click.
"""
