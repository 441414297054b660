"""Manifests: loading YAML safely, validating it, and building the desired-state objects.

Data flow, one module per step, all driven by :func:`.validate.validate_tree`:

* :mod:`.load` (files, with size and encoding limits) -> :mod:`.yamlevents` (a file's YAML
  stream) -> :mod:`.builder` (one document's events -> data, with positions);
* :mod:`.declared` (header, :mod:`.schema`, duplicate codes) -> :mod:`.crossrefs` (references,
  media files, :mod:`.cron`, templates) -> :mod:`.build` (model objects) and :mod:`.generate`
  (the Assets of AssetSets, matched by :mod:`.assetsets`);
* :mod:`.locate` (findings -> file:line:column problems, see :mod:`.problems`).

Everything here returns data; nothing prints.
"""
