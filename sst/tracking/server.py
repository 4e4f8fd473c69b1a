"""What needs a ClearML server: template tasks, clones, queues, waiting, reading tasks back.

    sst sweep --models models.txt --queue gpu    # sweep_template, enqueue_sweep, wait_for
    sst replay <task-id> --queue gpu             # clone_task, task_record
    sst report --tag <sweep-id>                  # project_results
    sst replay <task link>  /  sst verify <task link> runs/<id>   # task_record
    sst upload <session.zip> --run runs/<id>     # upload_session, attach_run
    sst predict --task <task link> "…"           # fetch_run
    sst predict --model <model id> "…"           # fetch_model

Each starts by checking that the server answers and takes the credentials
(:func:`sst.tracking.tracker.check_server`: one line otherwise, where the SDK would retry for
hours); a task id or queue the server does not know is one line too. tests/clearml_server is the
API server the tests run these against, with the real SDK and clearml-agent.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from sst.env.git import git_patch, git_state
from sst.errors import SstError
from sst.io import MANIFEST, default_cache_dir, sha256_file
from sst.run import fingerprint as fp
from sst.run import folder as runs
from sst.tracking import agent, registry, tracker

TEMPLATE_NAME = "sst train (sweep template)"
TERMINAL = {"completed", "failed", "stopped", "closed", "published"}
DONE = ("completed", "closed", "published")
LOG_TAIL = 12  # lines of a failed task's log shown with it


def task_class() -> Any:
    """ClearML's ``Task``, online (an earlier task of this process may have been offline: the
    SDK's offline mode is process-wide), once the server answered."""
    tracker.check_server()
    from clearml import Task

    Task.set_offline(False)
    return Task


def get_task(task_id: str) -> Any:
    """The task ``task_id`` on the server; one line when there is none."""
    Task = task_class()
    try:
        return Task.get_task(task_id=task_id)
    except ValueError:  # the SDK's "Task ... not found"
        raise SstError(
            f"the ClearML server has no task {task_id}",
            fix="copy the id or link from the web UI (is CLEARML_API_HOST the right server?)",
        ) from None


def require_queue(name: str) -> str:
    """The id of queue ``name``; one line naming the queues there are when it does not exist
    (the SDK's ``Task.enqueue`` raises deep inside instead)."""
    from clearml.backend_api.session.client import APIClient

    task_class()
    queues = APIClient().queues.get_all(only_fields=["id", "name"])
    for queue in queues:
        if queue.name == name:
            return str(queue.id)
    known = ", ".join(sorted(q.name for q in queues)) or "none"
    raise SstError(
        f"the ClearML server has no queue {name!r} (queues: {known})",
        fix="pass an existing --queue, or start an agent that creates it: "
        f"clearml-agent daemon --queue {name} --create-queue",
    )


def log_tail(task: Any, lines: int = LOG_TAIL) -> list[str]:
    """The last ``lines`` lines a task logged (its console, as the agent reported it)."""
    reports = task.get_reported_console_output(number_of_reports=lines)
    text = "\n".join(str(r).rstrip("\n") for r in reports)
    return [line for line in text.splitlines() if line.strip()][-lines:]


def agents_source(what: str, queue: str) -> tuple[str, str]:
    """The kit's git remote and commit, which agents clone to run ``what`` (a sweep, a search),
    once ``queue`` is known to the server: one line otherwise, before any task or folder."""
    git = git_state()
    if not git.remote or not git.commit:
        raise SstError(
            f"{what} on a queue needs the kit's git remote and commit (agents clone it)",
            fix="run from a clone with remote.origin.url set",
        )
    require_queue(queue)
    return git.remote, git.commit


def sweep_template(
    project: str, *, repo: str, commit: str, base_config: str, diff: str = ""
) -> Any:
    """The training task every sweep line is cloned from: ``python -m sst.cli train --config
    <base_config>`` at ``commit`` of ``repo`` with ``diff`` (the kit's uncommitted changes, as
    a trained task records them) applied, in this run's image. Reused when one exists for that
    commit, diff and config (tags, then the script itself), created otherwise (never executed)."""
    Task = task_class()
    tags = ["sst-template", f"rev-{commit[:12]}", f"config-{Path(base_config).stem}"]
    if diff:
        tags.append(f"diff-{hashlib.sha256(diff.encode()).hexdigest()[:12]}")
    found = Task.get_tasks(  # "__$all": ClearML joins a tag list with OR by default
        project_name=project,
        task_name=f"^{re.escape(TEMPLATE_NAME)}$",
        tags=["__$all", *tags],
        allow_archived=False,
    )
    for task in found:  # the script checked too: the tags hold 12-digit prefixes
        script = task.data.script
        if script.version_num == commit and (script.diff or "") == diff:
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
    if diff:  # an agent applies it to the commit it checks out, as for a trained task
        template.set_script(diff=diff)
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
    listing its children. Returns the child task ids in order. ``repo`` and ``commit`` come from
    :func:`agents_source`, which checked ``queue`` before any task is made."""
    Task = task_class()
    image, docker_args = agent.container_image(), agent.container_arguments()
    template = sweep_template(
        project, repo=repo, commit=commit, base_config=base_config, diff=git_patch()
    )
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
            child.set_tags([sweep_id])  # a clone keeps its source's tags: not the template's
            child.set_base_docker(docker_image=image, docker_arguments=docker_args)
            Task.enqueue(child, queue_name=queue)
            ids.append(str(child.id))
        named = dict(zip([n for n, _ in children], ids, strict=True))
        controller.record("children", named, "each model's task, cloned from the template")
    finally:
        controller.close()
    return ids


POLL = float(os.environ.get("SST_WAIT_POLL") or 30)  # seconds between status polls (--wait)


def wait_for(task_ids: list[str], *, poll: float = POLL, out: Any = None) -> dict[str, str]:
    """Poll the tasks until each is finished; print every status change, and the tail of the
    log of a task that did not complete. Returns id → status."""
    Task = task_class()
    out = out or sys.stdout
    status: dict[str, str] = {}
    while True:
        for task_id in task_ids:
            task = Task.get_task(task_id=task_id)
            now = str(task.get_status())
            if status.get(task_id) != now:
                print(f"task {task_id}: {now}", file=out, flush=True)
                status[task_id] = now
                if now in TERMINAL and now not in DONE:
                    print("\n".join(f"  | {line}" for line in log_tail(task)), file=out)
        if all(s in TERMINAL for s in status.values()):
            return status
        time.sleep(poll)


FINGERPRINT = "fingerprint"  # the configuration object holding a run task's fingerprint
DATASET = "dataset"  # the configuration object naming the ClearML Dataset a task's split is
DATASET_ID_FILE = ".clearml_dataset_id"  # in a split folder: a local note, not in the manifest


def split_dataset(folder: Path) -> dict[str, Any] | None:
    """The ClearML Dataset a split folder was published as or fetched from (its id and manifest
    sha256, as a task records it), or None."""
    note = folder / DATASET_ID_FILE
    if not note.is_file():
        return None
    return {"id": note.read_text().strip(), fp.SPLIT: sha256_file(folder / MANIFEST)}


def _agents_task() -> Any:
    """Under a clearml-agent, the task it runs; None when run by hand."""
    task_id = os.environ.get("CLEARML_TASK_ID")
    if not task_id or not tracker.server_configured():
        return None
    Task = task_class()
    return None if Task.running_locally() else Task.get_task(task_id=task_id)


def remote_dataset() -> dict[str, Any] | None:
    """Under a clearml-agent: the ClearML Dataset the running task's split is (the ``dataset``
    configuration object its source task recorded: id and manifest sha256); None by hand."""
    task = _agents_task()
    return None if task is None else tracker.configuration(task, DATASET)


def fetch_split(recorded: dict[str, Any], folder: Path) -> None:
    """The split a task recorded (``recorded``: its Dataset id and manifest sha256) into
    ``folder``, from ClearML's Dataset (``Dataset.get``: downloaded once into ClearML's cache,
    read-only there, copied here), refused unless its manifest is the recorded one. The folder
    appears whole or not at all."""
    task_class()  # the server answers, the SDK is online
    from clearml import Dataset

    try:
        local = Path(Dataset.get(dataset_id=recorded["id"]).get_local_copy())
    except ValueError as e:  # the SDK's own for a dataset the server does not know
        raise SstError(
            f"the split's ClearML Dataset {recorded['id']} cannot be read: {e}",
            path=folder,
            fix="copy the split folder here, or make it with `sst split` (sources needed)",
        ) from None
    got = sha256_file(local / MANIFEST)
    if got != recorded.get(fp.SPLIT):
        raise SstError(
            f"the ClearML Dataset {recorded['id']} holds a split whose manifest sha256 is "
            f"{got[:12]}…, the task recorded {str(recorded.get(fp.SPLIT))[:12]}…",
            path=folder,
            fix="the dataset was replaced: copy the split the run used, or replay its run folder",
        )
    tmp = folder.with_name(f".{folder.name}.fetching")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(local, tmp)
    (tmp / DATASET_ID_FILE).write_text(f"{recorded['id']}\n")  # a replay of this run records it
    folder.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, folder)


def remote_overrides() -> list[str]:
    """Under a clearml-agent: the running task's ``config/…`` parameters (a sweep's overrides) as
    ``section.key=value`` for ``sst train``; nothing when run by hand."""
    task = _agents_task()
    return [] if task is None else agent.parameters_to_overrides(task.get_parameters())


def clone_task(task_id: str, queue: str) -> str:
    """A clone of ``task_id`` (same parameters, same image), enqueued; returns its id."""
    Task = task_class()
    require_queue(queue)
    source = get_task(task_id)
    clone = Task.clone(source_task=source, name=f"replay of {task_id}", parent=task_id)
    # a clone keeps the source's tags (a sweep's id would count it twice) and its recorded
    # fingerprint: the replay starts with neither, and records its own
    clone.set_tags(["replay"])
    clone.set_configuration_object(name=FINGERPRINT, config_text="")
    Task.enqueue(clone, queue_name=queue)
    return str(clone.id)


def task_record(task_id: str) -> tuple[dict[str, str], dict[str, Any], dict[str, float]]:
    """A task's flat parameters (``section/key``), its recorded fingerprint (empty if none) and
    its single values (``Summary``)."""
    task = get_task(task_id)
    single = task.get_reported_single_values() or {}
    params = dict(task.get_parameters() or {})
    fingerprint = tracker.configuration(task, FINGERPRINT) or {}
    return params, fingerprint, {k: float(v) for k, v in single.items()}


def project_results(project: str, tag: str) -> list[dict[str, Any]]:
    """The training tasks of ``project`` tagged ``tag``: id, name, status, model, single values,
    and for a task that did not complete the tail of its log."""
    Task = task_class()
    results = []
    for task in Task.get_tasks(
        project_name=project, tags=[tag], task_filter={"type": ["training"]}
    ):
        params = task.get_parameters() or {}
        status = str(task.get_status())
        results.append(
            {
                "id": str(task.id),
                "name": str(task.name),
                "status": status,
                "model": str(params.get("config/model/name", "?")),
                "values": {
                    k: float(v) for k, v in (task.get_reported_single_values() or {}).items()
                },
                "log": log_tail(task) if status not in DONE else [],
                "link": str(task.get_output_log_web_page()),
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
    return str(get_task(task_id).get_output_log_web_page())


def upload_session(session: Path) -> str:
    """Import an offline session (zip or folder) into the configured server; the new task id."""
    if not tracker.server_configured():
        raise SstError(
            "no ClearML server is configured",
            path=session,
            fix="run `clearml-init` or set CLEARML_API_HOST and the CLEARML_API_* keys",
        )
    task_id = task_class().import_offline_session(str(session))
    if not task_id:
        raise SstError("ClearML did not import the session", path=session, fix="see its log above")
    return str(task_id)


def attach_run(task_id: str, folder: Path) -> str | None:
    """A finished run folder's shared files as the task's artifacts (digests kept by ClearML),
    its weights registered as the task's model (the id returned). The server takes artifacts
    only on a task in progress (or created), and an imported session arrives completed: it is
    reopened for the upload, then completed again."""
    task = get_task(task_id)
    done = str(task.get_status()) in DONE
    if done:
        task.mark_started(force=True)
    model_id = tracker.Tracker(task=task, offline=False).upload_run(folder, runs.SHARED)
    if done:
        task.mark_completed(force=True)
    return model_id


def fetch_model(model_id: str) -> Path:
    """A model sst registered, downloaded as a run folder, its sha256 checked
    (:func:`sst.tracking.registry.fetch_model`)."""
    task_class()  # the server answers, the SDK is online
    return registry.fetch_model(model_id)


def fetch_run(task_id: str, dest: Path | None = None) -> Path:
    """The run folder a task shared, downloaded from its artifacts into ``dest`` (default the sst
    cache); every file is checked against the recorded fingerprint before it is returned."""
    task = get_task(task_id)
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
    run = runs.Run.open(folder, need=runs.SHARED).verify()  # the files against the fingerprint
    recorded = (tracker.configuration(task, FINGERPRINT) or {}).get(fp.WEIGHTS)
    if recorded and run.weights_sha256 != recorded:  # ...and the fingerprint against the task
        raise SstError(
            f"the shared fingerprint names weights {run.weights_sha256}, the task recorded "
            f"{recorded}",
            path=folder / runs.FINGERPRINT,
            fix="the task's files were replaced: ask for the run again, or replay the task",
        )
    return folder
