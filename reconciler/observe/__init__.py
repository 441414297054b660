"""Observation: what the master files hold now (opened safely, hashed once, cached by identity).

Stage two of the data flow: manifests -> **observe** -> plan -> apply -> drivers -> store.
"""
