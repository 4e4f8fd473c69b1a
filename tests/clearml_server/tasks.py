"""``tasks.*``: the task documents and their life cycle, as clearml-server keeps them
(``apiserver/services/tasks.py``, ``apiserver/bll/task/``).

The status machine is the server's (``apiserver/bll/task/utils.py`` ``state_machine``): created →
queued/in_progress; queued → created/in_progress/stopped; in_progress → stopped/failed/created/
completed; … A change the machine does not allow is refused (400/110 "Invalid status change")
unless ``force``. ``tasks.edit`` changes only a task in ``created`` (400/110 otherwise, unless
``force``) and merges embedded documents (``script``, ``execution``, ``output``) field by field.
Artifacts are kept by ``<key>_<mode>`` and returned as a list sorted by key
(``apiserver/bll/task/artifacts.py``).
"""

from __future__ import annotations

import copy
from typing import Any

from tests.clearml_server.http import Call, bad_request
from tests.clearml_server.store import Collection, get_path, new_id, now, project

STATE_MACHINE = {  # apiserver/bll/task/utils.py
    "created": {"queued", "in_progress"},
    "queued": {"created", "in_progress", "stopped"},
    "in_progress": {"stopped", "failed", "created", "completed"},
    "stopped": {
        "closed",
        "created",
        "failed",
        "queued",
        "in_progress",
        "published",
        "publishing",
        "completed",
    },
    "closed": {"created", "failed", "published", "publishing", "stopped"},
    "failed": {"created", "stopped", "published", "queued"},
    "publishing": {"published"},
    "published": set(),
    "completed": {"published", "in_progress", "created"},
}
# tasks.create / tasks.edit: the fields a caller may set (services/tasks.py create_fields)
CREATE_FIELDS = (
    "name",
    "tags",
    "system_tags",
    "type",
    "comment",
    "parent",
    "project",
    "input",
    "models",
    "container",
    "output_dest",
    "execution",
    "hyperparams",
    "configuration",
    "script",
    "runtime",
)
EMBEDDED = ("script", "execution", "output", "models")  # merged by tasks.edit, not replaced
# tasks.update: what Task.user_set_allowed() lets a caller change at any status
UPDATE_FIELDS = ("name", "comment", "tags", "system_tags", "project", "status_message")


def for_update(task: dict[str, Any], force: bool) -> dict[str, Any]:
    """bll/task/utils.py get_task_for_update: a created task, or with ``force`` an in-progress
    one (400/110 otherwise): a completed task takes no new artifacts or parameters."""
    allowed = ("created", "in_progress") if force else ("created",)
    if task["status"] not in allowed:
        raise bad_request(110, "Invalid task status", expected="created", status=task["status"])
    return task


def artifact_id(artifact: dict[str, Any]) -> str:
    return f"{artifact['key']}_{artifact.get('mode', 'output')}"


def conform(task: dict[str, Any]) -> dict[str, Any]:
    """A task as the API returns it: artifacts as a list sorted by key."""
    out = copy.deepcopy(task)
    artifacts = get_path(out, "execution.artifacts")
    if isinstance(artifacts, dict):
        out["execution"]["artifacts"] = sorted(artifacts.values(), key=lambda a: a["key"])
    return out


class Tasks:
    def __init__(self, projects: Collection, queues: Any) -> None:
        self.docs = Collection(  # database/model/task/task.py get_all_query_options
            "task",
            (101, "invalid task id"),
            ("project", "status", "type", "tags", "system_tags", "parent", "user"),
        )
        self.projects = projects
        self.queues = queues

    def handlers(self) -> dict[str, Any]:
        return {
            f"tasks.{name}": getattr(self, name)
            for name in (
                "create",
                "get_all",
                "get_all_ex",
                "get_by_id",
                "edit",
                "update",
                "clone",
                "started",
                "stopped",
                "failed",
                "completed",
                "close",
                "reset",
                "enqueue",
                "dequeue",
                "ping",
                "set_requirements",
                "add_or_update_artifacts",
                "get_hyper_params",
                "edit_hyper_params",
                "get_configurations",
                "edit_configuration",
                "add_or_update_model",
                "update_tags",
            )
        }

    # -- reading ------------------------------------------------------------------------------

    def get_all(self, call: Call) -> dict[str, Any]:
        """tasks.get_all: GetMixin.get_all with the list/pattern semantics of store.py."""
        query = dict(call.data)
        only = query.pop("only_fields", None)
        found = self.docs.select(query)
        return {"tasks": [project(conform(self.docs.get(t["id"])), only) for t in found]}

    get_all_ex = get_all  # tasks.get_all_ex: the same query language with more options

    def get_by_id(self, call: Call) -> dict[str, Any]:
        return {"task": conform(self.docs.get(call.data.get("task")))}

    def get_hyper_params(self, call: Call) -> dict[str, Any]:
        """bll/task/hyperparams.py get_params: every section's params as a list."""
        params = []
        for task_id in call.data.get("tasks") or []:
            task = self.docs.get(task_id)
            flat = [
                p for section in (task.get("hyperparams") or {}).values() for p in section.values()
            ]
            params.append({"task": task_id, "hyperparams": flat})
        return {"params": params}

    def get_configurations(self, call: Call) -> dict[str, Any]:
        names = call.data.get("names")
        configs = []
        for task_id in call.data.get("tasks") or []:
            items = (self.docs.get(task_id).get("configuration") or {}).values()
            wanted = [c for c in items if not names or c["name"] in names]
            configs.append({"task": task_id, "configuration": wanted})
        return {"configurations": configs}

    # -- creating and changing ---------------------------------------------------------------

    def create(self, call: Call) -> dict[str, Any]:
        """tasks.create (services/tasks.py create, bll/task/task_bll.py create)."""
        data = call.data
        if not data.get("name") or not data.get("type"):
            raise bad_request(11, "missing required fields", fields=["name", "type"])
        if data.get("project"):
            self.projects.get(data["project"])
        stamp = now()
        task: dict[str, Any] = {
            "id": new_id(),
            "user": call.user,
            "company": "sst-test",
            "status": "created",
            "status_reason": "",
            "status_message": "",
            "created": stamp,
            "last_update": stamp,
            "last_change": stamp,
            "tags": [],
            "system_tags": [],
            "script": {},
            "execution": {"artifacts": {}},
            "output": {},
            "models": {"input": [], "output": []},
            "hyperparams": {},
            "configuration": {},
            "container": {},
            "runtime": {},
            "last_iteration": 0,
            "last_worker": None,
        }
        self._set_fields(task, data, merge=False)
        return {"id": self.docs.add(task)["id"]}

    def _set_fields(self, task: dict[str, Any], data: dict[str, Any], *, merge: bool) -> None:
        for key in CREATE_FIELDS:
            if key not in data:
                continue
            value = copy.deepcopy(data[key])
            if key == "output_dest":
                task.setdefault("output", {})["destination"] = value
                continue
            if key == "execution" and isinstance(value, dict) and "artifacts" in value:
                value["artifacts"] = {artifact_id(a): a for a in value["artifacts"] or []}
            if merge and key in EMBEDDED and isinstance(value, dict):
                task[key] = {**(task.get(key) or {}), **value}
            else:
                task[key] = value
        task["last_change"] = now()

    def edit(self, call: Call) -> dict[str, Any]:
        """tasks.edit: only a created task, unless force; embedded documents merged."""
        task = self.docs.get(call.data.get("task"))
        if not call.data.get("force") and task["status"] != "created":
            raise bad_request(110, "Invalid task status", expected="created", status=task["status"])
        self._set_fields(task, call.data, merge=True)
        return {"updated": 1, "fields": {k: call.data[k] for k in CREATE_FIELDS if k in call.data}}

    def update(self, call: Call) -> dict[str, Any]:
        """tasks.update: the user-settable fields, at any status."""
        task = self.docs.get(call.data.get("task"))
        fields = {k: copy.deepcopy(call.data[k]) for k in UPDATE_FIELDS if k in call.data}
        task.update(fields)
        return {"updated": int(bool(fields)), "fields": fields}

    def update_tags(self, call: Call) -> dict[str, Any]:
        updated = 0
        for task_id in call.data.get("ids") or []:
            task = self.docs.get(task_id)
            for key in ("tags", "system_tags"):
                add = call.data.get(f"add_{key}") or []
                remove = set(call.data.get(f"remove_{key}") or [])
                task[key] = [t for t in task[key] if t not in remove] + [
                    t for t in add if t not in task[key]
                ]
            updated += 1
        return {"updated": updated}

    def set_requirements(self, call: Call) -> dict[str, Any]:
        task = self.docs.get(call.data.get("task"))
        if task.get("script") is None:
            raise bad_request(122, "Task has no script field", task=task["id"])
        task["script"]["requirements"] = call.data.get("requirements")
        return {"updated": 1, "fields": {"script.requirements": call.data.get("requirements")}}

    def edit_hyper_params(self, call: Call) -> dict[str, Any]:
        """bll/task/hyperparams.py edit_params: replace none (merge), section or all."""
        task = for_update(self.docs.get(call.data.get("task")), bool(call.data.get("force")))
        replace = call.data.get("replace_hyperparams") or "none"
        params = task.setdefault("hyperparams", {})
        if replace == "all":
            params.clear()
        touched: set[str] = set()
        for item in call.data.get("hyperparams") or []:
            section = item.get("section") or ""
            if replace == "section" and section not in touched:
                params[section] = {}
            touched.add(section)
            params.setdefault(section, {})[item["name"]] = {
                "section": section,
                "name": item["name"],
                "value": "" if item.get("value") is None else str(item["value"]),
                "type": item.get("type"),
                "description": item.get("description"),
            }
        return {"updated": 1}

    def edit_configuration(self, call: Call) -> dict[str, Any]:
        task = for_update(self.docs.get(call.data.get("task")), bool(call.data.get("force")))
        config = task.setdefault("configuration", {})
        if call.data.get("replace_configuration"):
            config.clear()
        for item in call.data.get("configuration") or []:
            config[item["name"]] = {
                k: item.get(k) for k in ("name", "value", "type", "description")
            }
        return {"updated": 1}

    def add_or_update_artifacts(self, call: Call) -> dict[str, Any]:
        """services/tasks.py add_or_update_artifacts: always forced (created or in progress)."""
        task = for_update(self.docs.get(call.data.get("task")), force=True)
        artifacts = task.setdefault("execution", {}).setdefault("artifacts", {})
        for artifact in call.data.get("artifacts") or []:
            artifacts[artifact_id(artifact)] = copy.deepcopy(artifact)
        return {"updated": 1}

    def add_or_update_model(self, call: Call) -> dict[str, Any]:
        """tasks.add_or_update_model: a model in the task's input or output list, by name."""
        task = self.docs.get(call.data.get("task"))
        kind = call.data.get("type") or "output"
        models = task.setdefault("models", {}).setdefault(kind, [])
        item = {"name": call.data.get("name"), "model": call.data.get("model"), "updated": now()}
        models[:] = [m for m in models if m.get("name") != item["name"]] + [item]
        return {"updated": 1}

    def clone(self, call: Call) -> dict[str, Any]:
        """bll/task/task_bll.py clone_task: script, hyperparams, configuration, container and
        the execution (without output artifacts and the queue) copied; the parent is the source
        (or its own parent); status created."""
        data = call.data
        source = self.docs.get(data.get("task"))
        execution = copy.deepcopy(source.get("execution") or {})
        execution["artifacts"] = {
            k: a for k, a in (execution.get("artifacts") or {}).items() if a.get("mode") != "output"
        }
        execution.pop("queue", None)
        overrides = copy.deepcopy(data.get("execution_overrides") or {})
        container = data.get("new_task_container")
        if (docker_cmd := overrides.pop("docker_cmd", None)) and not container:
            image, _, arguments = docker_cmd.partition(" ")
            container = {"image": image, "arguments": arguments}
        execution.update(overrides)
        for ref, docs in (("new_task_parent", self.docs), ("new_task_project", self.projects)):
            if data.get(ref):
                docs.get(data[ref])  # validate_references: an unknown id is refused
        stamp = now()
        # a new Task of task_bll.py's fields, not a copy of the source's document
        clone = {
            "id": new_id(),
            "user": call.user,
            "company": source.get("company"),
            "status": "created",
            "status_reason": "",
            "status_message": "",
            "created": stamp,
            "last_update": stamp,
            "last_change": stamp,
            "name": data.get("new_task_name") or source["name"],
            "comment": data.get("new_task_comment") or source.get("comment"),
            "parent": data.get("new_task_parent") or source.get("parent") or source["id"],
            "project": data.get("new_task_project") or source.get("project"),
            "tags": data.get("new_task_tags") or list(source.get("tags") or []),
            "system_tags": data.get("new_task_system_tags")
            or [t for t in source.get("system_tags") or [] if t not in ("development", "archived")],
            "type": source["type"],
            "script": copy.deepcopy(source.get("script")),
            "output": {"destination": (source.get("output") or {}).get("destination")},
            "models": {
                "input": copy.deepcopy(
                    data.get("new_task_input_models") or (source.get("models") or {}).get("input")
                )
                or [],
                "output": [],
            },
            "container": copy.deepcopy(container or source.get("container")),
            "execution": execution,
            "configuration": copy.deepcopy(
                data.get("new_task_configuration") or source.get("configuration")
            ),
            "hyperparams": copy.deepcopy(
                data.get("new_task_hyperparams") or source.get("hyperparams")
            ),
            "runtime": {},
            "last_iteration": 0,
            "last_worker": None,
        }
        return {"id": self.docs.add(clone)["id"]}

    # -- the life cycle ----------------------------------------------------------------------

    def _change(self, call: Call, new: str, **fields: Any) -> dict[str, Any]:
        """bll/task/utils.py ChangeStatusRequest.execute."""
        task = self.docs.get(call.data.get("task"))
        current = task["status"]
        if not call.data.get("force") and new != current and new not in STATE_MACHINE[current]:
            raise bad_request(110, "Invalid status change", current_status=current, new_status=new)
        stamp = now()
        changed = {
            "status": new,
            "status_reason": call.data.get("status_reason") or "",
            "status_message": call.data.get("status_message") or "",
            "status_changed": stamp,
            "last_update": stamp,
            **fields,
        }
        if new == "queued":
            changed["system_tags"] = [t for t in task["system_tags"] if t != "development"]
        task.update(changed)
        return {"updated": 1, "fields": {k: v for k, v in changed.items() if k != "system_tags"}}

    def started(self, call: Call) -> dict[str, Any]:
        task = self.docs.get(call.data.get("task"))
        res = self._change(call, "in_progress", started=task.get("started") or now())
        if call.worker:
            task["last_worker"] = call.worker
        return {**res, "started": res["updated"]}

    def stopped(self, call: Call) -> dict[str, Any]:
        return self._change(call, "stopped", completed=now())

    def failed(self, call: Call) -> dict[str, Any]:
        return self._change(call, "failed")

    def completed(self, call: Call) -> dict[str, Any]:
        return self._change(call, "completed", completed=now())

    def close(self, call: Call) -> dict[str, Any]:
        return self._change(call, "closed")

    def reset(self, call: Call) -> dict[str, Any]:
        """tasks.reset: back to created, out of any queue, output artifacts dropped."""
        task = self.docs.get(call.data.get("task"))
        self.queues.remove_task(task["id"])
        res = self._change(call, "created", started=None, completed=None)
        artifacts = get_path(task, "execution.artifacts") or {}
        task["execution"]["artifacts"] = {
            k: a for k, a in artifacts.items() if a.get("mode") != "output"
        }
        task["execution"].pop("queue", None)
        return res

    def enqueue(self, call: Call) -> dict[str, Any]:
        """bll/task/task_operations.py enqueue_task: status queued, then into the queue (a
        queue_name that does not exist is created: the SDK looks its name up first)."""
        data = call.data
        if data.get("queue") and data.get("queue_name"):
            raise bad_request(12, "Either queue id or queue name should be provided")
        queue_id = data.get("queue") or (
            data.get("queue_name") and self.queues.by_name(data["queue_name"], create=True)["id"]
        )
        queue = self.queues.docs.get(queue_id) if queue_id else self.queues.default()
        task = self.docs.get(data.get("task"))
        before = task["status"]  # the status a dequeue returns it to
        if before == "queued" and task.get("enqueue_status"):
            before = task["enqueue_status"]
        res = self._change(call, "queued", enqueue_status=before)
        try:
            self.queues.add_task(queue["id"], data["task"])
        except Exception:  # failed enqueueing: back to the previous status
            task.update(status=before, enqueue_status=None, status_reason="failed enqueueing")
            raise
        task.setdefault("execution", {})["queue"] = queue["id"]
        res["fields"]["execution.queue"] = queue["id"]
        return {"queued": 1, **res}

    def dequeue(self, call: Call) -> dict[str, Any]:
        """task_operations.py dequeue_task → task_bll.py dequeue_and_change_status: out of its
        queue (silently when it is in none), and when queued or in progress to ``new_status``
        (default: the status it had before it was enqueued), forced."""
        task = self.docs.get(call.data.get("task"))
        self.queues.remove_task(task["id"])
        if task["status"] not in ("queued", "in_progress"):
            return {"dequeued": 1, "updated": 0}
        new = call.data.get("new_status") or task.get("enqueue_status") or "created"
        res = self._change(
            Call(call.endpoint, {**call.data, "force": True}, call.user, call.worker), new
        )
        task["enqueue_status"] = None
        return {"dequeued": 1, **res}

    def ping(self, call: Call) -> dict[str, Any]:
        self.docs.get(call.data.get("task"))["last_update"] = now()
        return {}
