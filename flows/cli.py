"""``python -m flows run | verify | trends | publish | synth | nightly | serve | drills``.

Each sub-command's handler lives beside the code it drives and is imported only
when that command runs, so ``verify`` works without Prefect or pandas loaded.
Every handler follows one exit-code rule, written in ``--help`` (:data:`EXIT_CODES`).
Drill ids and their help text come from :mod:`flows.registry`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from flows import registry
from flows.errors import FlowsError
from flows.trends.formatting import WINDOW_HOURS  # no pandas: the publish default

DEFAULT_ROOT = "pilot_artifacts"

EXIT_CODES = """exit codes (every command):
    0  ok: every drill passed, the evidence verifies, the site was built
    1  a failed verdict or broken evidence: a drill failed or errored, a run
       does not verify, the site's strict build failed
    2  usage or environment errors: bad arguments, an unknown drill id, a
       missing config, an evidence root that cannot be read or written, no
       runs to report
  130  interrupted (Ctrl-C), as shells report it
  verify checks integrity only: a sealed run whose verdict is fail is intact
  evidence of a failure and verifies (0)."""

VERIFY_DESCRIPTION = """Re-check evidence offline: every file against its run's manifest and
signed statement (attestation.dsse.json), the sealed criteria, every leaf against
log/entries.jsonl, the Merkle root against the signed log/checkpoint.dsse.json, each kept
older checkpoint (log/checkpoints/) and --since for consistency, each inclusion.json.
Always the full check: every file is hashed and every signature checked again (the
site's verify memo, <site>/.verify-memo.json, is only for publishing and never read here).

One line per run:
  OK          sealed and intact (whatever its verdict: a failed drill is intact evidence)
  INCOMPLETE  never sealed (the run is still going, or its writer died and no later
              run has signed it yet); reported, not a failure
  BROKEN      something changed, is missing or was added; every problem is named after
              the run lines (run, file, log entry or checkpoint, and the values)
then the key id, each checkpoint as "checkpoint: size N root H" (copy those two values
somewhere we do not control; later pass them as --since N:H), and a summary line."""

VERIFY_EPILOG = """exit codes:
    0  intact: every run OK or INCOMPLETE, the log and every checkpoint consistent
    1  BROKEN: at least one problem, each printed on its own line
    2  nothing to check: no such path, a file, no run folders, an unreadable key,
       a malformed --since, or (--prove) no signed log or the run is not in it

examples:
    python -m flows verify pilot_artifacts --key ~/evidence-key.pub --since 40:3f0a…
    python -m flows verify pilot_artifacts/chaos-drill-20261128-020000 --prove"""

# command -> (module, handler); each handler takes the parsed args, returns an exit code.
_HANDLERS = {
    "run": ("flows.runner", "cmd_run"),
    "verify": ("flows.evidence", "cmd_verify"),
    "trends": ("flows.trends.history", "cmd_trends"),
    "publish": ("flows.site", "cmd_publish"),
    "synth": ("flows.evidence.synthetic", "cmd_synth"),
    "nightly": ("flows.pipeline.nightly", "cmd_nightly"),
    "serve": ("flows.pipeline.deploy", "cmd_serve"),
    "drills": ("flows.cli", "cmd_drills"),
}


def _add_drill_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--drill",
        action="append",
        metavar="ID",
        dest="drills",
        choices=registry.DRILL_IDS,
        help="run only this drill; repeat for several (default: all). "
        f"One of: {', '.join(registry.DRILL_IDS)}",
    )


def _add_program_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--program",
        metavar="NAME",
        help="the config's program the per-program drills target; the others must stay "
        "untouched (default: the first program; an unknown name exits 2 listing the known ones)",
    )


def cmd_drills(args: argparse.Namespace) -> int:
    """``python -m flows drills``: every drill's id, title, key metric and unit."""
    rows = [("id", "title", "key metric", "unit")]
    rows += [(d.id, d.title, d.metric, d.unit) for d in registry.DRILLS]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m flows",
        description="Chaos drills against the process supervisor, with verifiable evidence.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(sub)
    _add_evidence(sub)
    _add_nightly(sub)
    _add_serve(sub)
    sub.add_parser("drills", help="list the drills: id, title, key metric and unit")
    for command in sub.choices.values():  # every command's --help carries the one rule
        command.epilog = command.epilog or EXIT_CODES
        command.formatter_class = argparse.RawDescriptionHelpFormatter
    return parser


def _add_run(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser("run", help="run drills into a new run folder (no Prefect needed)")
    run.add_argument(
        "--artifacts",
        default=DEFAULT_ROOT,
        metavar="ROOT",
        help="evidence root; a new chaos-drill-<UTC stamp> folder is made in it "
        "(default: %(default)s)",
    )
    run.add_argument(
        "--run-dir",
        metavar="DIR",
        help="write into exactly this folder instead of a new one under ROOT",
    )
    _add_drill_option(run)
    run.add_argument(
        "--config",
        metavar="FILE",
        help="supervisor config (TOML) whose programs to drill (default: the demo worker)",
    )
    _add_program_option(run)
    run.add_argument("--command-line", help=argparse.SUPPRESS)
    _add_signing_options(run)


def _add_signing_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--signing-key",
        metavar="PATH",
        help="Ed25519 private key (PEM) that signs the run and the log; generated there if "
        "missing (default: $EVIDENCE_SIGNING_KEY, else "
        "$XDG_CONFIG_HOME/chaos-drills/evidence-key.pem)",
    )
    parser.add_argument(
        "--owner",
        metavar="NAME",
        help="owner named in each run's EVIDENCE.md (default: $EVIDENCE_OWNER, else this user)",
    )


def _signing_environment(args: argparse.Namespace) -> None:
    """--signing-key and --owner reach the writer (and a Prefect task) as its settings."""
    if getattr(args, "signing_key", None):
        os.environ["EVIDENCE_SIGNING_KEY"] = os.path.abspath(args.signing_key)
    if getattr(args, "owner", None):
        os.environ["EVIDENCE_OWNER"] = args.owner


def _add_evidence(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    verify = sub.add_parser(
        "verify",
        help="check a run folder, or every run: files, signatures, the log, criteria",
        description=VERIFY_DESCRIPTION,
        epilog=VERIFY_EPILOG,
    )
    verify.add_argument(
        "path",
        nargs="?",
        default=DEFAULT_ROOT,
        metavar="RUN_DIR|ROOT",
        help="one run folder, or a root holding run folders (default: %(default)s)",
    )
    verify.add_argument(
        "--key",
        metavar="PUB",
        help="the signer's public key (PEM); default: evidence-key.pub in the root. "
        "Pass a copy kept elsewhere: a key read from the root proves consistency only. "
        "With a key, a root whose log is gone, or whose newer runs are unsigned, is BROKEN",
    )
    verify.add_argument(
        "--since",
        metavar="SIZE:ROOT",
        help="a checkpoint you copied somewhere we do not control earlier: its size and "
        "root_sha256, as the site's home page ('Log checkpoint') or verify's own "
        "'checkpoint: size N root H' line shows them, e.g. 40:3f0a…; verify fails unless "
        "the log only grew from it",
    )
    verify.add_argument(
        "--prove",
        action="store_true",
        help="once everything verifies, print fresh proofs as JSON instead of the report: "
        "for a run folder its inclusion proof against the current signed checkpoint; for "
        "every root a consistency proof from each kept older checkpoint (and --since)",
    )

    trends = sub.add_parser("trends", help="print per-drill trends in the terminal")
    trends.add_argument(
        "--artifacts",
        default=DEFAULT_ROOT,
        metavar="ROOT",
        help="the evidence root: run folders, or hosts/<name>/ folders of them (default: %(default)s)",
    )

    publish = sub.add_parser("publish", help="compute trends and build the evidence site")
    publish.add_argument(
        "--artifacts",
        default=DEFAULT_ROOT,
        metavar="ROOT",
        help="the evidence root: run folders, or hosts/<name>/ folders of them (default: %(default)s)",
    )
    publish.add_argument(
        "--site-dir",
        default="site",
        metavar="DIR",
        help="where mkdocs writes the site (default: %(default)s)",
    )
    publish.add_argument(
        "--no-build",
        action="store_true",
        help="generate the Markdown pages only; skip mkdocs build",
    )
    publish.add_argument(
        "--stale-hours",
        type=float,
        default=WINDOW_HOURS,
        metavar="H",
        help="the schedule's window: a drill with no outcome for longer is stale, a night "
        "counts as missed once H hours have passed since it began (default: %(default)g)",
    )

    synth = sub.add_parser(
        "synth",
        help="write synthetic run folders (for demos and benchmarks)",
        description="Write a made-up history of nightly runs through the real run writer, "
        'each marked "synthetic": true in results.json, in EVIDENCE.md and in its signed '
        "statement (predicate synthetic: true). They say nothing about the supervisor.",
    )
    synth.add_argument(
        "--artifacts",
        required=True,
        metavar="ROOT",
        help="the evidence root to write into; use a root of its own (e.g. /tmp/demo), not "
        "the one real runs go to",
    )
    synth.add_argument(
        "--runs", type=int, default=30, metavar="N", help="how many runs (default: %(default)s)"
    )
    synth.add_argument(
        "--seed",
        type=int,
        default=1,
        help="same seed, same history (default: %(default)s)",
    )
    synth.add_argument(
        "--signing-key",
        metavar="PATH",
        help="Ed25519 private key (PEM) to sign with; default: the well-known synthetic "
        "key, never your real evidence key, so a synthetic root proves nothing and verify "
        "says so",
    )


def _add_nightly(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    nightly = sub.add_parser(
        "nightly",
        help="run the nightly-drills Prefect flow once, locally",
        description="Run the nightly-drills flow once: on the server of $PREFECT_API_URL "
        "(e.g. make serve) when set, else on a temporary local one. Drill ids: "
        + ", ".join(registry.DRILL_IDS),
    )
    nightly.add_argument(
        "--artifacts",
        default=DEFAULT_ROOT,
        metavar="ROOT",
        help="the evidence root: run folders, or hosts/<name>/ folders of them (default: %(default)s)",
    )
    _add_drill_option(nightly)
    nightly.add_argument("--config", metavar="FILE")
    _add_program_option(nightly)
    nightly.add_argument("--no-publish", action="store_true", help="skip trends and site")
    _add_signing_options(nightly)
    nightly.add_argument(
        "--site-dir",
        default="site",
        metavar="DIR",
        help="where the evidence site is built (default: %(default)s)",
    )


def _add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser("serve", help="serve the nightly deployment to a Prefect server")
    serve.add_argument(
        "--cron", default=None, help='schedule (default: env NIGHTLY_CRON or "0 2 * * *")'
    )
    serve.add_argument(
        "--timezone", default=None, help="schedule timezone (default: env NIGHTLY_TIMEZONE or UTC)"
    )
    serve.add_argument(
        "--with-server", action="store_true", help="also start a local Prefect server on 127.0.0.1"
    )
    serve.add_argument("--port", type=int, default=4200, help="local server port")
    serve.add_argument(
        "--artifacts",
        default=DEFAULT_ROOT,
        metavar="ROOT",
        help="the deployment's artifacts_root, made absolute (default: %(default)s)",
    )
    serve.add_argument(
        "--site-dir",
        default="site",
        metavar="DIR",
        help="the deployment's site_dir, made absolute (default: %(default)s)",
    )
    serve.add_argument(
        "--config",
        metavar="FILE",
        help="the deployment's supervisor config (default: the demo worker)",
    )
    serve.add_argument(
        "--site-port",
        type=int,
        metavar="PORT",
        help="also serve the built site on 127.0.0.1:PORT (0 picks one); the runs' "
        "drill-site artifacts then link there",
    )
    serve.add_argument(
        "--notify-url",
        metavar="URL",
        help="webhook the alerts (failed run, missed night) post to, as a Prefect "
        "notification block (default: automations with no notification)",
    )
    serve.add_argument(
        "--missed-window",
        type=float,
        metavar="SECONDS",
        help="alert when no run completed within this many seconds "
        "(default: env NIGHTLY_MISSED_WINDOW_S or 26 hours)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    # Every entry point keeps Prefect's state in the working directory's .prefect/
    # unless the user chose a PREFECT_HOME; set before any command imports Prefect.
    os.environ.setdefault("PREFECT_HOME", str(Path.cwd() / ".prefect"))
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("httpx", "httpcore"):  # one line per request drowns the drill progress
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _signing_environment(args)
    module_name, handler_name = _HANDLERS[args.command]
    handler = getattr(importlib.import_module(module_name), handler_name)
    try:
        return int(handler(args) or 0)
    except FlowsError as exc:  # a handler reports what it expects; the rest is environment
        print(f"flows {args.command}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file or folder the command cannot use: name it, no traceback
        print(f"flows {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
