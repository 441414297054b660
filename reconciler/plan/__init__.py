"""Planning: desired placements x recorded state -> the changes to make (a Plan), never doing them.

Stage three of the data flow: manifests -> observe -> **plan** -> apply -> drivers -> store.
Within it: :mod:`.desired` (manifests + observations -> the desired tables' rows),
:mod:`.diff` (the pure diff: rows in, actions out), :mod:`.planner` (``make_plan``: observe,
desire, read the store, diff, schedules, guards), :mod:`.actions` (Action, Plan, the plan
file), :mod:`.schedule`, :mod:`.saved` (a saved plan checked against a fresh one) and
:mod:`.explain`. Nothing here imports apply or the drivers, and nothing here runs SQL: the
queries are :mod:`reconciler.store.planning`'s.
"""
