"""The ``nightly-drills`` Prefect flow: one task per drill, evidence, artifacts, site.

The flow adds a schedule, a history and a rerun button to :mod:`flows.runner`;
the drills and the evidence store never need Prefect. Drills run one at a time
(they share the CPU and measure latency), each in a task named after it, with a
timeout and no retries: a drill that needs a retry to pass is a finding.

Every drill's result is recorded the moment its task ends, a task that crashes
or times out included (as ``error``), so one broken drill never costs the
evidence of the others. After the drills the run is sealed, the site is built
(when ``publish``), the Prefect artifacts are written, and only then does the
flow end ``Failed`` if any drill failed or errored, or the site did not build.

``python -m flows nightly`` (``make drill``) runs the flow once, locally.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import httpx
from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Completed, Failed

from flows.drills import DrillOptions
from flows.errors import FlowsError, SetupError
from flows.evidence import RunWriter, new_run_dir
from flows.evidence.layout import HOSTS
from flows.evidence.log import checkpoint_lines
from flows.pipeline.events import emit_sealed, emit_verdict
from flows.registry import DRILL_IDS, check_ids
from flows.runner import (
    drill_options,
    open_run,
    prepare,
    record_error,
    run_loop,
    run_one,
    summary_rows,
    summary_table,
)

__all__ = [
    "DRILL_TIMEOUT_S",
    "FLOW_NAME",
    "cmd_nightly",
    "build_site",
    "nightly_drills",
    "run_page_link",
    "store_and_host",
]

FLOW_NAME = "nightly-drills"
DRILL_TIMEOUT_S = 300.0  # the slowest drill takes ~6 s; a hang is a finding, not a wait
LOCAL_SERVER_PORT = 4200  # make serve's
SITE_URL_ENV = "NIGHTLY_SITE_URL"  # e.g. https://evidence.example/ when the site is served
ARTIFACT_RESULTS = "drill-results"
ARTIFACT_EVIDENCE = "drill-evidence"
ARTIFACT_SITE = "drill-site"

if TYPE_CHECKING:
    DrillId = str
else:
    # The rerun form's multi-select: the JSON schema lists exactly the registry's ids,
    # so a typo such as "api-kill" is refused by the API before a run starts.
    DrillId = Literal[DRILL_IDS]


@task(retries=0, cache_policy=NO_CACHE, persist_result=False)
def drill_task(writer: RunWriter, drill_id: str, options: DrillOptions) -> dict[str, Any]:
    """Run one drill against its own supervisor and record it (:func:`flows.runner.run_one`)."""
    return run_one(writer, drill_id, options)


def _drill_in_task(writer: RunWriter, drill_id: str, options: DrillOptions) -> dict[str, Any]:
    """The loop's way to run one drill: in a task named after it; a task that does not
    return (a crash, the timeout) is recorded as ``error``."""
    one = drill_task.with_options(
        name=drill_id, task_run_name=drill_id, timeout_seconds=DRILL_TIMEOUT_S
    )
    state = one(writer, drill_id, options, return_state=True)
    if state.is_completed():
        result: dict[str, Any] = state.result()
    else:
        message = f"error: the Prefect task ended {state.name}: {state.message or 'no message'}"
        result = record_error(writer, drill_id, message)
    emit_verdict(result)
    return result


def build_site(artifacts_root: str, site_dir: str) -> str:
    """Compute the trends and build the evidence site; the path of its index.html."""
    try:
        from flows.site import publish
    except ImportError as exc:
        raise SetupError(
            f"publish: flows.site.publish is not available ({exc}); the evidence is "
            "written, but no site was built. Rerun with publish=false (--no-publish), "
            "or install the evidence-site module"
        ) from exc
    # publish writes only into site_dir (its MkDocs staging folder included).
    return str(publish(Path(artifacts_root), Path(site_dir)))


@task(name="publish-site", retries=0, cache_policy=NO_CACHE, persist_result=False)
def publish_task(artifacts_root: str, site_dir: str) -> str:
    """:func:`build_site` as the flow's task."""
    return build_site(artifacts_root, site_dir)


def _options(config: str | None) -> DrillOptions:
    return DrillOptions(config=Path(config) if config else None)


def store_and_host(artifacts_root: str | Path) -> tuple[Path, str]:
    """(the evidence store, the host name) of an artifacts root.

    A root ``<store>/hosts/<host>/`` is one host's part of a multi-host store: its
    runs' pages live under ``hosts/<host>/`` of any site built from the store. Any
    other root is a store of its own, with no host name.
    """
    root = Path(artifacts_root)
    if root.resolve().parent.name == HOSTS:
        return root.resolve().parent.parent, root.resolve().name
    return root, ""


def run_page_link(site_index: Path | None, run_id: str, host: str = "") -> str | None:
    """A run's page: its URL under ``$NIGHTLY_SITE_URL`` if set, else its file's path in
    the site of ``site_index`` (None when there is neither). ``host`` names the run's
    host in a multi-host store (:func:`store_and_host`), whose pages live under it.

    A path, not a ``file://`` URL: the Prefect UI drops ``file://`` links, so the
    artifact shows the path as text to copy (:func:`_artifacts`).
    """
    from flows.site import run_page_url

    page = run_page_url(run_id, host)
    base = os.environ.get(SITE_URL_ENV, "").strip()
    if base:
        return base.rstrip("/") + "/" + page
    if site_index is None:
        return None
    return str((site_index.parent / page / "index.html").resolve())


def _is_url(link: str) -> bool:
    return link.startswith(("http://", "https://"))


def _evidence_markdown(
    results: dict[str, Any], run_dir: Path, site: str | None, publish_error: str | None
) -> str:
    bad = [d for d in results["drills"] if d["status"] != "pass"]
    lines = [
        f"# {results['run_id']}: {results['verdict'].upper()}",
        "",
        f"{len(results['drills']) - len(bad)} of {len(results['drills'])} drill(s) passed "
        f"on `{results['host']['hostname']}`.",
        "",
    ]
    if bad:
        lines += ["## Failing drills", ""]
        lines += [f"- **{d['id']}** ({d['status']}): `{d['summary']}`" for d in bad]
        lines.append("")
    lines += [
        "## Evidence",
        "",
        f"- run folder: `{run_dir}`",
        f"- verify: `python -m flows verify {run_dir}`",
        *checkpoint_lines(run_dir.parent),
    ]
    if site and _is_url(site):
        lines.append(f"- site page: [{results['run_id']}]({site})")
    elif site:
        lines.append(f"- site page (not served; open the file): `{site}`")
    elif publish_error:
        lines.append(f"- site: **not built**: {publish_error}")
    else:
        lines.append("- site: not built (publish=false)")
    return "\n".join(lines) + "\n"


def _artifacts(
    results: dict[str, Any], run_dir: Path, link: str | None, publish_error: str | None
) -> None:
    run_id = results["run_id"]
    create_table_artifact(
        summary_rows(results),
        key=ARTIFACT_RESULTS,
        description=f"{run_id}: {results['verdict'].upper()}",
    )
    create_markdown_artifact(
        _evidence_markdown(results, run_dir, link, publish_error),
        key=ARTIFACT_EVIDENCE,
        description=f"{run_id}: verdict, failing drills, where the evidence is",
    )
    if link and _is_url(link):
        create_link_artifact(
            link,
            link_text=f"evidence page of {run_id}",
            key=ARTIFACT_SITE,
            description="this run's page in the evidence site",
        )
    elif link:
        create_markdown_artifact(
            f"Run page (the site is not served; open this file): `{link}`\n\n"
            f"Set `{SITE_URL_ENV}` to where the site is served (or `make serve "
            "SITE_PORT=8000`) to get a link here.\n",
            key=ARTIFACT_SITE,
            description=f"where {run_id}'s page is",
        )
    else:
        create_markdown_artifact(
            f"No site was built; the run folder is `{run_dir.resolve()}`.\n",
            key=ARTIFACT_SITE,
            description="the site was not built; this is the run folder",
        )


def _publish(
    publish: bool, artifacts_root: str, site_dir: str, run_id: str
) -> tuple[str | None, str | None, str | None]:
    """(site index, run page link, publish error). Without ``publish`` no site is built,
    and the link is the page under ``$NIGHTLY_SITE_URL`` (a publisher's site) or None.

    A root under ``<store>/hosts/<host>/`` builds the whole store's site, so the run's
    page is where the publisher's site has it too: under its host.
    """
    store, host = store_and_host(artifacts_root)
    if not publish:
        return None, run_page_link(None, run_id, host), None
    state = publish_task(str(store if host else artifacts_root), str(site_dir), return_state=True)
    if not state.is_completed():
        return None, None, state.message or state.name
    site_index: str = state.result()
    return site_index, run_page_link(Path(site_index), run_id, host), None


@flow(name=FLOW_NAME, retries=0, log_prints=False)
def nightly_drills(
    drills: list[DrillId] | None = None,
    artifacts_root: str = "pilot_artifacts",
    config: str | None = None,
    publish: bool = True,
    site_dir: str = "site",
    program: str | None = None,
) -> State:
    """Run the chaos drills one by one into a new run folder, then build the evidence site.

    Args:
        drills: the drills to run (pick from the list); empty or null runs every drill.
        artifacts_root: the evidence root; every run, a rerun too, gets a new folder in it.
        config: a supervisor config (TOML) whose programs to drill; null drills the demo worker.
        publish: compute the trends and build the evidence site after the drills.
        site_dir: where the evidence site is built.
        program: the config's program the per-program drills target; null: the first.
    """
    logger = get_run_logger()
    ids = check_ids(drills)
    options = dataclasses.replace(_options(config), program=program or None)
    prepare(options, logger.info)  # an unreadable config fails here, before a run folder exists
    run_dir = new_run_dir(Path(artifacts_root))
    command = f"prefect flow {FLOW_NAME} " + shlex.join(
        [
            f"drills={','.join(ids)}",
            f"artifacts_root={artifacts_root}",
            f"config={config}",
            f"program={program}",
        ]
    )
    writer = open_run(run_dir, ids, options, command)
    results = run_loop(writer, ids, options, logger.info, one=_drill_in_task)
    emit_sealed(results, run_dir)

    site_index, link, publish_error = _publish(publish, artifacts_root, site_dir, writer.run_id)
    _artifacts(results, run_dir, link, publish_error)

    outcome = {
        "run_id": writer.run_id,
        "run_dir": str(run_dir),
        "verdict": results["verdict"],
        "results": results,
        "site_index": site_index,
        "site_page": link,
        "publish_error": publish_error,
    }
    bad = [f"{d['id']} {d['status']}" for d in results["drills"] if d["status"] != "pass"]
    problems = bad + ([f"site not built: {publish_error}"] if publish_error else [])
    if problems:
        return Failed(message=f"{writer.run_id}: " + "; ".join(problems), data=outcome)
    return Completed(message=f"{writer.run_id}: every drill passed", data=outcome)


def _which_server() -> tuple[str | None, str]:
    """The API to run on: ``$PREFECT_API_URL``, else a local ``make serve`` server if one
    answers, else None (Prefect's temporary server); and how to say which in the output."""
    configured = PREFECT_API_URL.value()
    if configured:
        return None, f"{configured} (PREFECT_API_URL)"
    local = f"http://127.0.0.1:{LOCAL_SERVER_PORT}/api"
    try:
        if httpx.get(f"{local}/health", timeout=1.0).status_code == 200:
            return local, f"{local} (the local server of make serve; its UI shows this run)"
    except httpx.HTTPError:
        pass
    return None, (
        f"a temporary one for this run (none answers on {local}; "
        "start make serve to keep runs in a UI and save ~8 s of start-up)"
    )


def cmd_nightly(args: argparse.Namespace) -> int:
    """``python -m flows nightly``: run the flow once, print the verdict table and paths.

    Exit 0 every drill passed and the site built, 1 a drill did not pass or the
    site did not build, 2 usage or environment errors (the flow then broke
    before any drill ran).
    """
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    try:
        check_ids(args.drills)
        drill_options(args.config, args.program)
    except FlowsError as exc:
        print(f"flows nightly: {exc}", file=sys.stderr)
        return 2
    api, which = _which_server()
    print(f"Prefect server: {which}", file=sys.stderr, flush=True)
    with temporary_settings(updates={PREFECT_API_URL: api} if api else {}):
        state = nightly_drills(
            drills=args.drills,
            artifacts_root=args.artifacts,
            config=args.config,
            publish=not args.no_publish,
            site_dir=args.site_dir,
            program=args.program,
            return_state=True,
        )
    outcome = state.result(raise_on_failure=False)
    if not isinstance(outcome, dict):  # it broke before the drills (config, disk): no evidence
        print(f"flows nightly: the flow ended {state.name}: {state.message}", file=sys.stderr)
        return 2
    print()
    print(summary_table(outcome["results"]))
    print(f"\nverdict:    {outcome['verdict'].upper()}")
    print(f"run folder: {outcome['run_dir']}")
    print(f"verify:     python -m flows verify {outcome['run_dir']}")
    if outcome["site_index"]:
        print(f"site:       {outcome['site_index']}")
        print(f"run page:   {outcome['site_page']}")
    elif outcome["publish_error"]:
        print(f"site:       NOT BUILT: {outcome['publish_error']}")
    return 0 if state.is_completed() else 1
