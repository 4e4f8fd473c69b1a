"""The one door to ClearML: start a task (online or offline), connect config, report, datasets.

    python -c "from sst.tracking import start_task; start_task('sst', 'probe', 'testing').close()"

Online when a ClearML server is configured (``CLEARML_API_HOST`` or a ``clearml.conf``), otherwise
offline (``CLEARML_OFFLINE_MODE``): the session lands in ``$CLEARML_CACHE_DIR/offline/<id>/``
(``task.json``, ``metrics.jsonl``) and is zipped at close; ``Task.import_offline_session(zip)`` on
a machine with a server uploads it later. No other module imports clearml.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SECRET_KEY = re.compile(
    r"(secret|password|passwd|token(?!izer)|credential|access_key|api_key)", re.I
)
REDACTED = "<redacted>"


def clearml_task() -> Any:
    """The ClearML ``Task`` class: the one place the kit takes it from (the online sweep's
    contract test replaces it here)."""
    from clearml import Task

    return Task


def server_configured() -> bool:
    """True when ClearML should talk to a server: credentials in the environment or a config
    file, and offline mode not forced."""
    if os.environ.get("CLEARML_OFFLINE_MODE", "").lower() in ("1", "true", "yes"):
        return False
    if os.environ.get("CLEARML_API_HOST") and os.environ.get("CLEARML_API_ACCESS_KEY"):
        return True
    candidates = [os.environ.get("CLEARML_CONFIG_FILE"), "~/clearml.conf", "~/.clearml.conf"]
    return any(c and Path(c).expanduser().is_file() for c in candidates)


def scrub(value: Any) -> Any:
    """A copy of ``value`` with every secret-looking key's value replaced, at any depth."""
    if isinstance(value, Mapping):
        return {k: (REDACTED if SECRET_KEY.search(str(k)) else scrub(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    return value


@dataclass
class Tracker:
    """A started ClearML task and what the kit reports to it."""

    task: Any
    offline: bool
    session_dir: Path | None = None
    closed: bool = field(default=False, init=False)

    @property
    def id(self) -> str:
        return str(self.task.id)

    def connect(self, section: str, values: Mapping[str, Any]) -> None:
        """Record ``values`` (nested dicts allowed) as a hyper-parameter section."""
        self.task.connect(scrub(dict(values)), name=section)

    def report_single_value(self, name: str, value: float) -> None:
        self.task.get_logger().report_single_value(name, float(value))

    def report_figure(self, title: str, series: str, figure: Any, iteration: int = 0) -> None:
        self.task.get_logger().report_matplotlib_figure(
            title=title, series=series, figure=figure, iteration=iteration, report_image=True
        )

    def report_histogram(
        self, title: str, series: str, values: list[float], labels: list[str], iteration: int = 0
    ) -> None:
        self.task.get_logger().report_histogram(
            title=title, series=series, values=values, iteration=iteration, xlabels=labels
        )

    def report_table(self, title: str, series: str, table: Any, iteration: int = 0) -> None:
        self.task.get_logger().report_table(
            title=title, series=series, iteration=iteration, table_plot=table
        )

    def report_confusion_matrix(
        self, title: str, series: str, matrix: list[list[int]], labels: list[str], iteration: int
    ) -> None:
        self.task.get_logger().report_confusion_matrix(
            title=title,
            series=series,
            iteration=iteration,
            matrix=matrix,
            xaxis="predicted",
            yaxis="true",
            xlabels=labels,
            ylabels=labels,
        )

    def report_scalar(self, title: str, series: str, value: float, iteration: int) -> None:
        self.task.get_logger().report_scalar(title, series, float(value), iteration)

    def record_container(self, image: str, arguments: str) -> None:
        """Make a clone run in ``image``: ``set_base_docker`` for agents, and a ``Container``
        section (offline sessions pin API 2.9, where set_base_docker keeps only a legacy
        ``docker_cmd`` string)."""
        self.task.set_base_docker(docker_image=image, docker_arguments=arguments)
        self.connect("Container", {"image": image, "arguments": arguments})

    def set_tags(self, tags: list[str]) -> None:
        self.task.add_tags(tags)

    def create_split_dataset(
        self, project: str, name: str, files: list[Path], raw_files: list[Path]
    ) -> str | None:
        """Online only: the raw files as one ``clearml.Dataset`` and the split as its child.
        Returns the split dataset id, or None offline (the manifest is the version then)."""
        if self.offline:
            return None
        from clearml import Dataset

        raw = Dataset.create(dataset_name=f"{name}-raw", dataset_project=project)
        for path in raw_files:
            raw.add_files(path=str(path))
        raw.upload()
        raw.finalize()
        child = Dataset.create(dataset_name=name, dataset_project=project, parent_datasets=[raw.id])
        for path in files:
            child.add_files(path=str(path))
        child.upload()
        child.finalize()
        return str(child.id)

    def close(self) -> Path | None:
        """Close the task; offline, return the session zip."""
        if self.closed:
            return None
        self.closed = True
        self.task.close()
        if self.offline and self.session_dir is not None:
            zipped = self.session_dir.with_suffix(".zip")
            return zipped if zipped.is_file() else self.session_dir
        return None

    def describe(self) -> str:
        if self.offline and self.session_dir is not None:
            zipped = self.session_dir.with_suffix(".zip")
            return (
                f"ClearML offline session {self.session_dir} (upload it later with: python -c "
                f"\"from clearml import Task; Task.import_offline_session('{zipped}')\")"
            )
        return f"ClearML task {self.id}: {self.task.get_output_log_web_page()}"


def start_task(
    project: str,
    name: str,
    task_type: str,
    config: Mapping[str, Any] | None = None,
    *,
    tags: list[str] | None = None,
    monitor_resources: bool = False,
    quiet: bool = False,
) -> Tracker:
    """Start a ClearML task: online when a server is configured, offline otherwise (said in one
    line on stderr). ``config`` is connected as the ``config`` section, secrets redacted."""
    from clearml.config import ConfigWrapper

    Task = clearml_task()
    offline = not server_configured()
    if offline:
        Task.set_offline(True)
        # Offline there is nothing to upload in the background: report in-process so that
        # close() returns at once instead of waiting ~10 s for a reporter subprocess.
        ConfigWrapper.set_overrides({"sdk": {"development": {"report_use_subprocess": False}}})
    # Task.init would reseed every RNG to 1337; the kit seeds explicitly after starting a task.
    Task.set_random_seed(None)
    task: Any = Task.init(
        project_name=project,
        task_name=name,
        task_type=getattr(Task.TaskTypes, task_type),
        reuse_last_task_id=False,
        auto_connect_arg_parser=False,
        auto_connect_frameworks={"matplotlib": False},
        auto_resource_monitoring=monitor_resources,
        output_uri=None,
    )
    session = Path(task.get_offline_mode_folder()) if offline else None
    tracker = Tracker(task=task, offline=offline, session_dir=session)
    if tags:
        tracker.set_tags(tags)
    if config is not None:
        tracker.connect("config", config)
    if not quiet:
        print(tracker.describe(), file=sys.stderr)
    return tracker


# -- online sweeps (need a server; tests/test_sweep.py holds the contract) ---------------------

TEMPLATE_NAME = "sst train (sweep template)"
TERMINAL = {"completed", "failed", "stopped", "closed", "published"}


def sweep_template(
    project: str, *, repo: str, commit: str, base_config: str, image: str, docker_args: str
) -> Any:
    """The training task every sweep line is cloned from: ``python -m sst.cli train --config
    <base_config>`` at ``commit`` of ``repo`` in ``image``. Reused when one exists for that
    commit and config (tags), created otherwise (never executed itself)."""
    Task = clearml_task()
    tags = ["sst-template", f"rev-{commit[:12]}", f"config-{Path(base_config).stem}"]
    found = Task.get_tasks(
        project_name=project, task_name=re.escape(TEMPLATE_NAME), tags=tags, allow_archived=False
    )
    if found:
        return found[0]
    template = Task.create(
        project_name=project,
        task_name=TEMPLATE_NAME,
        task_type="training",
        repo=repo,
        commit=commit,
        module=f"sst.cli train --config {base_config}",
        docker=image,
        docker_args=docker_args,
        add_task_init_call=False,
    )
    template.add_tags(tags)
    return template


def enqueue_sweep(
    project: str,
    sweep_id: str,
    children: list[tuple[str, dict[str, str]]],
    *,
    queue: str,
    repo: str,
    commit: str,
    base_config: str,
    image: str,
    docker_args: str,
) -> list[str]:
    """One clone of the template per child (name, ``config/…`` parameter overrides), tagged with
    the sweep id, carrying the image, enqueued on ``queue``; the sweep itself is a controller task
    listing its children. Returns the child task ids in order."""
    Task = clearml_task()
    template = sweep_template(
        project,
        repo=repo,
        commit=commit,
        base_config=base_config,
        image=image,
        docker_args=docker_args,
    )
    controller = start_task(
        project,
        f"sweep {sweep_id}",
        "controller",
        {"queue": queue, "template": str(template.id)},
        tags=[sweep_id],
    )
    ids: list[str] = []
    try:
        for name, params in children:
            child = Task.clone(source_task=template, name=name, parent=controller.id)
            child.set_parameters(params)
            child.add_tags([sweep_id])
            child.set_base_docker(docker_image=image, docker_arguments=docker_args)
            Task.enqueue(child, queue_name=queue)
            ids.append(str(child.id))
        controller.connect("children", dict(zip([n for n, _ in children], ids, strict=True)))
    finally:
        controller.close()
    return ids


def wait_for(task_ids: list[str], *, poll: float = 30.0, out: Any = None) -> dict[str, str]:
    """Poll the tasks until each is finished; print every status change. Returns id → status."""
    import time

    Task = clearml_task()
    out = out or sys.stdout
    status: dict[str, str] = {}
    while True:
        for task_id in task_ids:
            now = str(Task.get_task(task_id=task_id).get_status())
            if status.get(task_id) != now:
                print(f"task {task_id}: {now}", file=out, flush=True)
                status[task_id] = now
        if all(s in TERMINAL for s in status.values()):
            return status
        time.sleep(poll)


def remote_overrides() -> list[str]:
    """Under a clearml-agent: the running task's ``config/…`` parameters (a sweep's overrides) as
    ``section.key=value`` for ``sst train``; nothing when run by hand."""
    task_id = os.environ.get("CLEARML_TASK_ID")
    if not task_id or not server_configured():
        return []
    Task = clearml_task()
    if Task.running_locally():
        return []
    return parameters_to_overrides(Task.get_task(task_id=task_id).get_parameters())


def parameters_to_overrides(params: Mapping[str, Any]) -> list[str]:
    return [
        f"{key.removeprefix('config/').replace('/', '.')}={value}"
        for key, value in sorted(params.items())
        if key.startswith("config/") and value not in (None, "")
    ]


def clone_task(task_id: str, queue: str) -> str:
    """A clone of ``task_id`` (same parameters, same image), enqueued; returns its id."""
    Task = clearml_task()
    source = Task.get_task(task_id=task_id)
    clone = Task.clone(source_task=source, name=f"replay of {task_id}", parent=task_id)
    clone.add_tags(["replay"])
    Task.enqueue(clone, queue_name=queue)
    return str(clone.id)


def task_record(task_id: str) -> tuple[dict[str, str], dict[str, float]]:
    """A task's flat parameters (``section/key``) and its single values (``Summary``)."""
    task = clearml_task().get_task(task_id=task_id)
    single = task.get_reported_single_values() or {}
    return dict(task.get_parameters() or {}), {k: float(v) for k, v in single.items()}


def project_results(project: str, tag: str) -> list[dict[str, Any]]:
    """The training tasks of ``project`` tagged ``tag``: id, name, status, model, single values."""
    Task = clearml_task()
    results = []
    for task in Task.get_tasks(
        project_name=project, tags=[tag], task_filter={"type": ["training"]}
    ):
        params = task.get_parameters() or {}
        results.append(
            {
                "id": str(task.id),
                "name": str(task.name),
                "status": str(task.get_status()),
                "model": str(params.get("config/model/name", "?")),
                "values": {
                    k: float(v) for k, v in (task.get_reported_single_values() or {}).items()
                },
            }
        )
    return results
