"""``reconcile serve``: the web dashboard over the recorded state, and its JSON API.

:mod:`.app` builds the ASGI application; :mod:`.pages` renders the HTML pages from the
templates beside it, :mod:`.api` answers under ``/api``; both call the dashboard's use cases
in :mod:`reconciler.viewing` and shape their results with :mod:`.present`. :mod:`.security`
holds sign-in, CSRF and the Host check, :mod:`.context` what every request works with,
:mod:`.thumbs` and :mod:`.chart` the thumbnails and the activity chart.
"""
