"""``python -m flows.cluster``: see :mod:`flows.cluster.demo`."""

import signal
import sys

from flows.cluster.demo import main

code = main()
# Torn down and the status decided: Python's exit resets SIGINT to SIG_DFL, so a Ctrl-C
# landing now (a second press, while Prefect's exit hooks run) would make the status a
# death by SIGINT (-2) instead of `code`; ignore it from here on.
signal.signal(signal.SIGINT, signal.SIG_IGN)
sys.exit(code)
