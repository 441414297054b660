"""`reconcile` with a delay injected into every upload of the ``local`` driver, standing for
the round trip of a remote API; used by bench/workers.py to start latency-bound workers.

    python bench/slow_local.py worker --manifests M --media-root R --state URL ...

:meth:`reconciler.drivers.local.LocalDriver.upload` (the method that sends one file) is
wrapped so that it sleeps ``BENCH_UPLOAD_DELAY`` seconds (default 0.05) before doing the real
copy; nothing else of the product is changed. The sleep happens in the job's thread, as a
remote API's wait would: a worker with ``--concurrency 1`` waits it once per job.
"""

from __future__ import annotations

import os
import time
from typing import Any

from reconciler.cli.main import main
from reconciler.drivers.base import Uploaded
from reconciler.drivers.local import LocalDriver

DELAY = float(os.environ.get("BENCH_UPLOAD_DELAY", "0.05"))
_real_upload = LocalDriver.upload


def _slow_upload(self: LocalDriver, *args: Any, **kwargs: Any) -> Uploaded:
    time.sleep(DELAY)
    return _real_upload(self, *args, **kwargs)


LocalDriver.upload = _slow_upload  # type: ignore[method-assign]

if __name__ == "__main__":
    main()
