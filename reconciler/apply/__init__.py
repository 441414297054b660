"""Applying a plan: recover, admit, work, transfer through the drivers, record the outcomes.

Stage four of the data flow: manifests -> observe -> plan -> **apply** -> drivers -> store.
"""
