"""Planning: desired placements x recorded state -> the changes to make (a Plan), never doing them.

Stage three of the data flow: manifests -> observe -> **plan** -> apply -> drivers -> store.
Nothing here imports apply or the drivers.
"""
