"""``python -m supervisor``: the command line (``supervisor.cli``); its return is the exit code."""

import sys

from supervisor.cli import main

sys.exit(main())
