"""What needs a ClearML server: template tasks, clones, queues, waiting, reading tasks back.

    sst sweep --models models.txt --queue gpu    # sweep_template, enqueue_sweep, wait_for
    sst replay <task-id> --queue gpu             # clone_task, task_record
    sst report --tag <sweep-id>                  # project_results
    sst replay <task link>  /  sst verify <task link> runs/<id>   # task_record
    sst upload <session.zip> --run runs/<id>     # upload_session, attach_run
    sst predict --task <task link> "…"           # fetch_run

Every call goes through :func:`sst.tracking.tracker.clearml_task`, which is also where the
contract tests replace ClearML's ``Task`` class: no server can run here.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from sst.errors import SstError
from sst.io import default_cache_dir
from sst.run import folder as runs
from sst.tracking import agent, tracker

TEMPLATE_NAME = "sst train (sweep template)"
TERMINAL = {"completed", "failed", "stopped", "closed", "published"}


def sweep_template(project: str, *, repo: str, commit: str, base_config: str) -> Any:
    """The training task every sweep line is cloned from: ``python -m sst.cli train --config
    <base_config>`` at ``commit`` of ``repo`` in this run's image. Reused when one exists for
    that commit and config (tags), created otherwise (never executed itself)."""
    Task = tracker.clearml_task()
    tags = ["sst-template", f"rev-{commit[:12]}", f"config-{Path(base_config).stem}"]
    found = Task.get_tasks(  # "__$all": ClearML joins a tag list with OR by default
        project_name=project,
        task_name=f"^{re.escape(TEMPLATE_NAME)}$",
        tags=["__$all", *tags],
        allow_archived=False,
    )
    for task in found:  # the commit checked too: a 12-digit prefix is what the tag holds
        if task.data.script.version_num == commit:
            return task
    template = Task.create(
        project_name=project,
        task_name=TEMPLATE_NAME,
        task_type="training",
        repo=repo,
        commit=commit,
        module=f"sst.cli train --config {base_config}",
        docker=agent.container_image(),
        docker_args=agent.container_arguments(),
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
    args: list[str],
) -> list[str]:
    """One clone of the template per child (name, ``config/…`` parameter overrides), tagged with
    the sweep id, carrying the image, enqueued on ``queue``; the sweep itself is a controller task
    listing its children. Returns the child task ids in order."""
    Task = tracker.clearml_task()
    image, docker_args = agent.container_image(), agent.container_arguments()
    template = sweep_template(project, repo=repo, commit=commit, base_config=base_config)
    controller = tracker.start_task(
        project,
        f"sweep {sweep_id}",
        "controller",
        {"queue": queue, "template": str(template.id)},
        tags=[sweep_id],
    )
    ids: list[str] = []
    try:
        controller.record_script(args)
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
    Task = tracker.clearml_task()
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
    if not task_id or not tracker.server_configured():
        return []
    Task = tracker.clearml_task()
    if Task.running_locally():
        return []
    return agent.parameters_to_overrides(Task.get_task(task_id=task_id).get_parameters())


def clone_task(task_id: str, queue: str) -> str:
    """A clone of ``task_id`` (same parameters, same image), enqueued; returns its id."""
    Task = tracker.clearml_task()
    source = Task.get_task(task_id=task_id)
    clone = Task.clone(source_task=source, name=f"replay of {task_id}", parent=task_id)
    # a clone keeps the source's tags (a sweep's id would count it twice) and its recorded
    # fingerprint: the replay starts with neither, and records its own
    clone.set_tags(["replay"])
    params = clone.get_parameters() or {}
    clone.set_parameters({k: v for k, v in params.items() if not k.startswith("fingerprint/")})
    Task.enqueue(clone, queue_name=queue)
    return str(clone.id)


def task_record(task_id: str) -> tuple[dict[str, str], dict[str, float]]:
    """A task's flat parameters (``section/key``) and its single values (``Summary``)."""
    task = tracker.clearml_task().get_task(task_id=task_id)
    single = task.get_reported_single_values() or {}
    return dict(task.get_parameters() or {}), {k: float(v) for k, v in single.items()}


def project_results(project: str, tag: str) -> list[dict[str, Any]]:
    """The training tasks of ``project`` tagged ``tag``: id, name, status, model, single values."""
    Task = tracker.clearml_task()
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


# -- sharing a task: links, uploads, results ------------------------------------------------

TASK_LINK = re.compile(r"/(?:experiments|tasks)/([0-9a-f]{32})(?:[/?#]|$)")
TASK_ID = re.compile(r"[0-9a-f]{32}")


def task_id_from(text: str) -> str | None:
    """The task id in ``text``: a bare id or a web-UI link (``…/experiments/<id>/output/log``);
    None when it is neither."""
    if TASK_ID.fullmatch(text):
        return text
    m = TASK_LINK.search(text)
    return m.group(1) if m else None


def require_task_id(text: str) -> str:
    if (task_id := task_id_from(text)) is None:
        raise SstError(
            "not a ClearML task id or link", path=text, fix="copy the link from the web UI"
        )
    return task_id


def link(task_id: str) -> str:
    return str(tracker.clearml_task().get_task(task_id=task_id).get_output_log_web_page())


def upload_session(session: Path) -> str:
    """Import an offline session (zip or folder) into the configured server; the new task id."""
    if not tracker.server_configured():
        raise SstError(
            "no ClearML server is configured",
            path=session,
            fix="run `clearml-init` or set CLEARML_API_HOST and the CLEARML_API_* keys",
        )
    task_id = tracker.clearml_task().import_offline_session(str(session))
    if not task_id:
        raise SstError("ClearML did not import the session", path=session, fix="see its log above")
    return str(task_id)


def attach_run(task_id: str, folder: Path) -> None:
    """A finished run folder's shared files as the task's artifacts (digests kept by ClearML)."""
    task = tracker.clearml_task().get_task(task_id=task_id)
    tracker.Tracker(task=task, offline=False).upload_run(folder, runs.SHARED)


def fetch_run(task_id: str, dest: Path | None = None) -> Path:
    """The run folder a task shared, downloaded from its artifacts into ``dest`` (default the sst
    cache); every file is checked against the recorded fingerprint before it is returned."""
    task = tracker.clearml_task().get_task(task_id=task_id)
    folder = dest or default_cache_dir() / "tasks" / task_id
    missing = [name for name in runs.SHARED if name not in task.artifacts]
    if missing:
        raise SstError(
            f"task {task_id} has no {', '.join(missing)} artifact",
            fix="share the run: sst upload <session.zip> --run runs/<id> (or train with a server)",
        )
    folder.mkdir(parents=True, exist_ok=True)
    for name in runs.SHARED:
        local = task.artifacts[name].get_local_copy(raise_on_error=True)
        shutil.copyfile(local, folder / name)
    runs.Run.open(folder, need=runs.SHARED).verify()
    return folder
