"""The evidence store: one folder per drill run, sealed by a manifest and a hash chain.

- ``writer``: :class:`RunWriter` fills a run folder and seals it;
- ``verify``: re-checks one folder, or every folder under a root and the chain;
- ``memo``: the site's record of what verify concluded per unchanged run folder;
- ``layout``: file names, run-folder names and the readers both sides share;
- ``atomic``: atomic writes and digests;
- ``junit``: the ``junit.xml`` of a run;
- ``synthetic``: a made-up history written through :class:`RunWriter`.

The on-disk format is the contract in ``docs/evidence-format.md``.
"""

from flows.evidence.layout import RUN_PREFIX, SCHEMA_VERSION, list_runs, load_results
from flows.evidence.verify import RunCheck, VerifyReport, cmd_verify, verify
from flows.evidence.writer import RunWriter, new_run_dir

__all__ = [
    "RUN_PREFIX",
    "SCHEMA_VERSION",
    "RunCheck",
    "RunWriter",
    "VerifyReport",
    "cmd_verify",
    "list_runs",
    "load_results",
    "new_run_dir",
    "verify",
]
