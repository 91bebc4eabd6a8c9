"""``python -m flows.cluster [--drill ID] [--json FILE]``: several drill hosts, for real, then gone.

In order: PostgreSQL in a temporary folder; a wheel of the checkout installed
into a venv there; two drill hosts (namespaces, :mod:`flows.cluster.hosts`); the
Prefect server on PostgreSQL, listening only on the hosts' veth side; a
``process`` work pool with a queue per host and one for the publisher;
deployments ``nightly-drill-0N`` (one per queue) and ``publisher`` (triggered
when a host's run ends); the alerts; one worker per host inside it and the
publisher's worker beside the server, all running the installed package from
folders outside the checkout. Then it triggers a run on both hosts at once,
waits for both and for the publisher, prints each run folder with its host and
the site, verifies the evidence, reports the server's and PostgreSQL's CPU and
memory during the runs, and tears everything down, on Ctrl-C (SIGINT) or
SIGTERM too. Exit 0 when both runs passed, the site was built and the evidence
verifies; 1 otherwise; 2 when the cluster could not be set up.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID

import httpx

from flows.cluster.hosts import DrillHost, free_subnet
from flows.cluster.measure import TreeSampler, Usage
from flows.cluster.package import install_wheel
from flows.cluster.postgres import Postgres
from flows.errors import FlowsError
from flows.registry import DRILL_IDS

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun

__all__ = ["Cluster", "main"]

log = logging.getLogger("flows.cluster.demo")
POOL_QUEUE_PUBLISHER = "publisher"
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _say(message: str) -> None:
    print(message, flush=True)


class Cluster:
    """Every part of the demo cluster, started in order and stopped in reverse by :meth:`close`."""

    def __init__(self, source: Path, folder: Path, hosts: int = 2, port: int = 4200) -> None:
        self.source = source.resolve()
        self.folder = folder
        self.tag = f"chaos-{os.getpid()}"
        self.pool = self.tag
        self.store = folder / "store"
        self.site_dir = folder / "site"
        self.postgres = Postgres(folder / "pg")
        subnet = free_subnet(os.getpid() % 256)
        self.hosts = [DrillHost(self.tag, i, subnet) for i in range(1, hosts + 1)]
        self.port = port
        self.server: Any = None  # flows.pipeline.deploy.LocalServer once Prefect is imported
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.python: Path | None = None
        self.deployments: dict[str, UUID] = {}

    # ----- start -------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"http://{self.hosts[0].gateway}:{self.port}/api"

    def start(self, notify_url: str | None) -> None:
        t0 = time.monotonic()
        _say(f"cluster {self.tag}: temporary folder {self.folder}")
        self.postgres.start()
        _say(f"postgres: pid {self.postgres.pid}, unix socket only in {self.postgres.socket_dir}")
        self.python = install_wheel(self.source, self.folder / "package")
        _say(
            f"package: wheel installed into {self.python.parent.parent} (runs outside the checkout)"
        )
        for host in self.hosts:
            host.create()
            _say(f"host {host.hostname}: netns {host.netns}, {host.address} via {host.gateway}")
        self._start_server()
        self._deploy(notify_url)
        for host in self.hosts:
            self._start_worker(host.hostname, host.command, host.hostname)
        self._start_worker(POOL_QUEUE_PUBLISHER, lambda argv: argv, POOL_QUEUE_PUBLISHER)
        self._wait_workers()
        _say(f"cluster up in {time.monotonic() - t0:.1f}s")

    def _start_server(self) -> None:
        from flows.pipeline.deploy import LocalServer

        self.server = LocalServer(
            self.port,
            home=self.folder / "server-home",
            host=self.hosts[0].gateway,
            env={"PREFECT_API_DATABASE_CONNECTION_URL": self.postgres.url},
        )
        self.server.start()
        _say(f"prefect server: pid {self.server.popen.pid}, {self.server.ui_url} on PostgreSQL")

    def _deploy(self, notify_url: str | None) -> None:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.actions import WorkPoolCreate
        from prefect.workers.process import ProcessWorker

        from flows.pipeline.alerts import ensure_alerts, webhook_notifier
        from flows.pipeline.deploy import deploy_to_pool
        from flows.pipeline.publisher import deploy_publisher

        with get_client(sync_client=True) as client:
            template = ProcessWorker.get_default_base_job_template()
            client.create_work_pool(
                WorkPoolCreate(name=self.pool, type="process", base_job_template=template)
            )
            for queue in [*(h.hostname for h in self.hosts), POOL_QUEUE_PUBLISHER]:
                client.create_work_queue(name=queue, work_pool_name=self.pool, concurrency_limit=1)
        queues = {}
        for host in self.hosts:
            name = f"nightly-{host.hostname}"
            work = self.folder / "hosts" / host.hostname / "work"
            work.mkdir(parents=True, exist_ok=True)
            self.deployments[name] = deploy_to_pool(
                self.pool, host.hostname, name,
                artifacts_root=self.store / "hosts" / host.hostname, working_dir=work,
                site_dir=work / "site", publish=False,
            )  # fmt: skip
            queues[name] = (self.deployments[name], host.hostname)
        publisher_work = self.folder / "publisher"
        publisher_work.mkdir(parents=True, exist_ok=True)
        self.deployments["publisher"] = deploy_publisher(
            self.pool, POOL_QUEUE_PUBLISHER, self.store, self.site_dir, publisher_work
        )
        notifier = webhook_notifier(notify_url) if notify_url else None
        alerts = ensure_alerts(queues, notifier)
        _say(f"work pool {self.pool}: deployments {', '.join(sorted(self.deployments))}; "
             f"automations: {', '.join(sorted(alerts))}")  # fmt: skip

    def _start_worker(self, name: str, wrap: Any, queue: str) -> None:
        assert self.python is not None
        home = self.folder / "workers" / name
        home.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "PYTHON"))}
        env.update(
            PREFECT_API_URL=self.api_url,
            PREFECT_HOME=str(home / "prefect"),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PYTHONUNBUFFERED="1",
            # each host signs with its own key, kept in its folder (not root's ~/.config)
            EVIDENCE_SIGNING_KEY=str(home / "evidence-key.pem"),
            # the drills start `python -m supervisor.demo_worker`: the installed one
            PATH=f"{self.python.parent}:{env.get('PATH', '/usr/bin:/bin')}",
        )
        argv = [str(self.python), "-m", "prefect", "worker", "start", "--pool", self.pool,
                "--work-queue", queue, "--type", "process", "--name", name]  # fmt: skip
        with open(home / "worker.log", "ab") as logf:
            self.workers[name] = subprocess.Popen(
                wrap(argv), cwd=home, env=env, stdin=subprocess.DEVNULL, stdout=logf,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def _wait_workers(self, deadline_s: float = 120.0) -> None:
        from prefect.client.orchestration import get_client

        end = time.monotonic() + deadline_s
        with get_client(sync_client=True) as client:
            while time.monotonic() < end:
                dead = {n: w.returncode for n, w in self.workers.items() if w.poll() is not None}
                if dead:
                    raise FlowsError(f"cluster: worker(s) exited early {dead}; see "
                                     f"{self.folder}/workers/<name>/worker.log")  # fmt: skip
                online = {w.name for w in client.read_workers_for_work_pool(self.pool)}
                if set(self.workers) <= online:
                    _say(f"workers polling: {', '.join(sorted(online))}")
                    return
                time.sleep(0.5)
        raise FlowsError(f"cluster: workers not polling pool {self.pool} within {deadline_s:.0f}s")

    # ----- run ---------------------------------------------------------------

    def run(self, drills: list[str], timeout_s: float = 600.0) -> dict[str, Any]:
        """Trigger every host at once; wait for them and the publisher; measure meanwhile."""
        from prefect.client.orchestration import get_client
        from prefect.deployments import run_deployment

        sampler = TreeSampler({"prefect_server": self.server.popen.pid,
                               "postgres": self.postgres.pid or 0})  # fmt: skip
        sampler.start()
        t0 = time.monotonic()
        runs: dict[str, UUID] = {}
        for host in self.hosts:
            run = run_deployment(f"nightly-drills/nightly-{host.hostname}",
                                 parameters={"drills": drills}, timeout=0)  # fmt: skip
            runs[host.hostname] = cast("FlowRun", run).id  # sync call: a value
        _say(f"triggered {', '.join(runs)} with drills={drills}")
        states: dict[str, str] = {}
        end = t0 + timeout_s
        with get_client(sync_client=True) as client:
            while time.monotonic() < end and len(states) < len(runs):
                for name, run_id in runs.items():
                    state = client.read_flow_run(run_id).state
                    if name not in states and state is not None and state.type.value in TERMINAL:
                        states[name] = state.type.value
                        _say(f"{name}: {state.type.value} after {time.monotonic() - t0:.1f}s")
                time.sleep(0.5)
            both_s = time.monotonic() - t0
            usage = sampler.stop()
            published = self._wait_publisher(client, len(runs), end)
        return {"states": states, "runs": {h: str(r) for h, r in runs.items()},
                "trigger_to_all_complete_s": round(both_s, 2), "published": published,
                "usage": usage}  # fmt: skip

    def _wait_publisher(self, client: Any, expected: int, end: float) -> dict[str, Any]:
        from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

        dep = DeploymentFilter(id=DeploymentFilterId(any_=[self.deployments["publisher"]]))
        while time.monotonic() < end:
            runs = client.read_flow_runs(deployment_filter=dep)
            done = [r for r in runs if r.state and r.state.type.value in TERMINAL]
            if len(runs) >= expected and len(done) == len(runs):
                last = max(done, key=lambda r: r.end_time or r.created)
                return {"runs": len(runs), "last_state": last.state.type.value,
                        "states": sorted(r.state.type.value for r in done)}  # fmt: skip
            time.sleep(0.5)
        return {"runs": 0, "last_state": "TIMEOUT", "states": []}

    def events(self) -> dict[str, list[str]]:
        """The chaos.* events the server holds: event name -> resource ids."""
        body = {"filter": {"event": {"prefix": ["chaos."]}, "any_resource": None}, "limit": 50}
        answer = httpx.post(f"{self.api_url}/events/filter", json=body, timeout=30)
        answer.raise_for_status()
        found: dict[str, list[str]] = {}
        for event in answer.json().get("events", []):
            found.setdefault(event["event"], []).append(event["resource"]["prefect.resource.id"])
        return {k: sorted(v) for k, v in found.items()}

    # ----- stop --------------------------------------------------------------

    def close(self) -> list[str]:
        """Stop workers, server, PostgreSQL; delete the namespaces. What is left (should be [])."""
        for name, worker in self.workers.items():
            if worker.poll() is None:
                try:
                    os.killpg(worker.pid, signal.SIGINT)  # the worker cancels its flow runs
                    worker.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(worker.pid, signal.SIGKILL)
                    worker.wait()
                except ProcessLookupError:
                    pass
            log.info("cluster.worker_stopped name=%s status=%s", name, worker.returncode)
        for host in self.hosts:
            host.destroy()
        if self.server is not None:
            self.server.stop()
        self.postgres.stop()
        left = [f"worker {n}" for n, w in self.workers.items() if w.poll() is None]
        left += [f"netns {h.netns}" for h in self.hosts if h.created]
        if self.server is not None and self.server.popen and self.server.popen.poll() is None:
            left.append("prefect server")
        if self.postgres.popen and self.postgres.popen.poll() is None:
            left.append("postgres")
        return left


def _verify(store: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``python -m flows verify <store>``'s check, host by host: every run's files, chain,
    signed statement and log inclusion, and each host's signed checkpoint. (The runs by
    folder, the whole outcome.)"""
    from flows.errors import EvidenceError
    from flows.evidence import verify

    try:
        report = verify(store)
    except EvidenceError as exc:  # no run folder at all
        return {}, {"ok": False, "runs_checked": 0, "problems": [str(exc)], "checkpoints": {}}
    checks = {(r.host or "", r.run_id): r for r in report.runs}
    found = {}
    for results in sorted(store.glob("hosts/*/chaos-drill-*/results.json")):
        data = json.loads(results.read_text())
        run_dir = results.parent
        check = checks.get((run_dir.parent.name, run_dir.name))
        found[str(run_dir)] = {
            "host_folder": run_dir.parent.name,
            "hostname": data["host"]["hostname"],
            "verdict": data.get("verdict"),
            "verifies": check is not None and check.state == "OK",
            "signed": check is not None and check.signed,
            "log_index": check.log_index if check else None,
        }
    outcome = {
        "ok": report.ok,
        "runs_checked": report.runs_checked,
        "problems": report.problems,
        "checkpoints": {h: f"size {c['size']} root {str(c['root_sha256'])[:16]}…"
                        for h, c in report.checkpoints.items()},
    }  # fmt: skip
    return found, outcome


def _extrapolate(usage: dict[str, Usage], hosts: int, wall_s: float) -> dict[str, Any]:
    """Hosts per server core: a core's CPU-seconds over what one host's run cost the server and
    PostgreSQL together, per second of run (all hosts drilling at the same time, as at 02:00)."""
    spent = usage["prefect_server"].cpu_s + usage["postgres"].cpu_s
    per_host_per_s = spent / hosts / wall_s if wall_s else 0.0
    return {
        "server_plus_postgres_cpu_s_per_host_run": round(spent / hosts, 2),
        "hosts_per_core_at_full_load": int(1 / per_host_per_s) if per_host_per_s else None,
    }


def _report(cluster: Cluster, outcome: dict[str, Any]) -> dict[str, Any]:
    usage: dict[str, Usage] = outcome.pop("usage")
    wall = outcome["trigger_to_all_complete_s"]
    from flows.site import run_page_url

    runs_on_disk, verified = _verify(cluster.store)
    for run_dir, info in runs_on_disk.items():
        page = run_page_url(Path(run_dir).name, info["host_folder"])
        info["site_page"] = str(cluster.site_dir / page / "index.html")
        info["on_site"] = Path(info["site_page"]).is_file()
    report = {
        **outcome,
        "runs_on_disk": runs_on_disk,
        "verify": verified,
        "site": str(cluster.site_dir / "index.html"),
        "site_built": (cluster.site_dir / "index.html").is_file(),
        "events": cluster.events(),
        "usage": {name: u.as_dict() for name, u in usage.items()},
        "extrapolation": _extrapolate(usage, len(cluster.hosts), wall),
    }
    for run_dir, info in report["runs_on_disk"].items():
        _say(f"run folder: {run_dir}  host={info['hostname']}  verdict={info['verdict']}  "
             f"verifies={info['verifies']}  signed={info['signed']}  "
             f"log #{info['log_index']}  page on site={info['on_site']}")  # fmt: skip
    _say(
        f"site: {report['site']} (built: {report['site_built']}, publisher {outcome['published']})"
    )
    word = "intact" if verified["ok"] else f"BROKEN: {'; '.join(verified['problems'][:5])}"
    checkpoints = ", ".join(f"host {h}: {c}" for h, c in verified["checkpoints"].items())
    _say(f"verify {cluster.store}: {word} ({verified['runs_checked']} run(s); {checkpoints})")
    _say(f"trigger -> all hosts complete: {wall:.1f}s")
    for name, figures in report["usage"].items():
        _say(f"{name}: {figures}")
    _say(f"extrapolation: {report['extrapolation']}")
    return report


def _ok(report: dict[str, Any]) -> bool:
    runs = report["runs_on_disk"].values()
    return (
        set(report["states"].values()) == {"COMPLETED"}
        and len(runs) == len(report["states"])
        and all(r["verifies"] and r["signed"] and r["on_site"] for r in runs)
        and all(r["hostname"] == r["host_folder"] for r in runs)
        and report["verify"]["ok"]
        and report["site_built"]
    )


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m flows.cluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--drill", action="append", dest="drills", choices=DRILL_IDS,
                        metavar="ID", help="drill to run on every host (repeat; default api_kill)")  # fmt: skip
    parser.add_argument("--hosts", type=int, default=2, help="drill hosts (default: 2)")
    parser.add_argument("--port", type=int, default=4200, help="server port on the veth side")
    parser.add_argument("--source", default=".", help="the checkout to build the wheel from")
    parser.add_argument("--notify-url", help="webhook for the alerts (default: none)")
    parser.add_argument("--json", metavar="FILE", help="also write the report here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")  # fmt: skip
    if os.geteuid() != 0:
        print("flows.cluster: needs root (network namespaces, PostgreSQL as postgres)",
              file=sys.stderr)  # fmt: skip
        return 2
    signal.signal(signal.SIGTERM, _raise_interrupt)  # SIGTERM tears down as Ctrl-C does
    folder = Path(tempfile.mkdtemp(prefix="chaos-cluster-"))
    folder.chmod(0o755)  # the postgres user reaches its folder inside
    os.environ.setdefault("PREFECT_HOME", str(folder / "client-home"))
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    cluster: Cluster | None = None
    code = 2
    try:
        cluster = Cluster(Path(args.source), folder, args.hosts, args.port)
        # before Prefect is imported: its settings are read once, at import
        os.environ["PREFECT_API_URL"] = cluster.api_url
        cluster.start(args.notify_url)
        report = _report(cluster, cluster.run(args.drills or ["api_kill"]))
        code = 0 if _ok(report) else 1
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2, default=str))
    except FlowsError as exc:
        print(f"flows.cluster: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("flows.cluster: interrupted; tearing down", file=sys.stderr)
        code = 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut teardown
        left = cluster.close() if cluster else []
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
        kept = f"{folder} kept" if args.keep else f"{folder} removed (--keep keeps it)"
        _say(f"teardown: {'nothing left' if not left else 'LEFT: ' + ', '.join(left)}; {kept}")
        signal.signal(signal.SIGINT, signal.default_int_handler)
    return code if not left else max(code, 1)
