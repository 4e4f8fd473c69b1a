"""``projects.*``, ``queues.*``, ``workers.*``, ``events.*`` and ``models.*``, as clearml-server
keeps them (``apiserver/services/{projects,queues,workers,events,models}.py`` and their
``apiserver/bll/``).

- Queues hold task ids in order; ``queues.get_next_task`` pops the first and answers
  ``{"entry": {"task": id, "added": …}}``, putting a task stopped meanwhile back to queued
  (``services/queues.py``, ``bll/queue/queue_bll.py``); the queue with the system tag
  ``default`` is ``queues.get_default``'s (400/707 without one); a name is unique
  (``database/model/queue.py``: ``unique_with="company"``).
- Workers register with an id and the queues they poll; ``workers.status_report`` keeps their
  current task and registers a worker it does not know (``workers.auto_register: true``,
  ``config/default/apiserver.conf``; ``bll/workers/__init__.py``).
- Events arrive as JSON lines (``events.add_batch``, ``services/events.py``); a task's log is read
  back by ``events.get_task_log`` (the last batch unless ``navigate_earlier`` is false), its
  single values by ``events.get_task_single_value_metrics`` (the scalars reported at iteration
  -2**31, ``bll/event/event_metrics.py``; tasks without one left out).
- The scalar events of a batch update their task's ``last_metrics``, keyed by the md5 of the
  metric and of the variant (``database/utils.py`` ``hash_field_name``), as the server does per
  batch (below); ``events.scalar_metrics_iter_histogram`` gives each series' values in iteration
  order, single values left out (``bll/event/event_metrics.py``).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from typing import Any

from tests.clearml_server.http import Call, bad_request
from tests.clearml_server.store import Collection, new_id, now, project

SINGLE_SCALAR_ITERATION = -(2**31)  # bll/event/event_common.py


class Projects:
    def __init__(self) -> None:
        self.docs = Collection("project", (401, "invalid project id"), ("tags", "system_tags"))

    def handlers(self) -> dict[str, Any]:
        return {
            "projects.create": self.create,
            "projects.get_all": self.get_all,
            "projects.get_all_ex": self.get_all,
            "projects.get_by_id": self.get_by_id,
            "projects.update": self.update,
        }

    def update(self, call: Call) -> dict[str, Any]:
        """projects.update (services/projects.py): name, description, tags, system tags."""
        project = self.docs.get(call.data.get("project"))
        fields = {
            k: call.data[k]
            for k in ("name", "description", "tags", "system_tags", "default_output_destination")
            if k in call.data
        }
        project.update(fields)
        return {"updated": 1, "fields": fields}

    def create(self, call: Call) -> dict[str, Any]:
        """projects.create: names are unique (400/407 otherwise; bll/project/project_bll.py)."""
        name = (call.data.get("name") or "").strip()
        if not name:
            raise bad_request(407, "invalid project name", name=name)
        if any(p["name"] == name for p in self.docs.docs.values()):
            raise bad_request(407, "invalid project name: project name already exists", name=name)
        doc = {
            "id": new_id(),
            "name": name,
            "basename": name.rsplit("/", 1)[-1],
            "description": call.data.get("description") or "",
            "system_tags": call.data.get("system_tags") or [],
            "tags": call.data.get("tags") or [],
            "user": call.user,
            "created": now(),
        }
        return {"id": self.docs.add(doc)["id"]}

    def get_all(self, call: Call) -> dict[str, Any]:
        return {"projects": self.docs.select(call.data)}

    def get_by_id(self, call: Call) -> dict[str, Any]:
        return {"project": self.docs.get(call.data.get("project"))}


class Queues:
    def __init__(self) -> None:
        self.docs = Collection("queue", (701, "invalid queue id"), ("tags", "system_tags"))
        self.tasks: Any = None  # the tasks service, for get_next_task

    def handlers(self) -> dict[str, Any]:
        return {
            "queues.create": self.create,
            "queues.get_all": self.get_all,
            "queues.get_all_ex": self.get_all,
            "queues.get_by_id": self.get_by_id,
            "queues.get_default": lambda call: project(self.default(), None),
            "queues.get_next_task": self.get_next_task,
            "queues.remove_task": self.remove,
            "queues.add_task": lambda call: {
                "added": self.add_task(call.data["queue"], call.data["task"])
            },
            "queues.get_queue_metrics": lambda call: {"queues": []},
        }

    def create(self, call: Call) -> dict[str, Any]:
        return {"id": self.make(call.data.get("name") or "", call.data.get("tags") or [])["id"]}

    def make(self, name: str, tags: list[str]) -> dict[str, Any]:
        """queues.create (bll/queue/queue_bll.py; database/model/queue.py: a name unique with
        the company, 3 characters or more)."""
        if len(name.strip()) < 3 or any(q["name"] == name for q in self.docs.docs.values()):
            raise bad_request(12, "validation error: a queue name is unique, 3 characters or more")
        doc = {"id": new_id(), "name": name, "tags": tags, "system_tags": [], "entries": []}
        doc["created"] = now()
        return self.docs.add(doc)

    def by_name(self, name: str, *, create: bool = False) -> dict[str, Any]:
        for queue in self.docs.docs.values():
            if queue["name"] == name:
                return queue
        if create:
            return self.make(name, [])
        raise bad_request(701, "invalid queue id", name=name)

    def default(self) -> dict[str, Any]:
        for queue in self.docs.docs.values():
            if "default" in queue["system_tags"]:
                return queue
        raise bad_request(707, "no queue is tagged as the default queue for this company")

    def get_all(self, call: Call) -> dict[str, Any]:
        return {"queues": self.docs.select(call.data)}

    def get_by_id(self, call: Call) -> dict[str, Any]:
        return {"queue": project(self.docs.get(call.data.get("queue")), None)}

    def add_task(self, queue_id: str, task_id: str) -> int:
        queue = self.docs.get(queue_id)
        if any(e["task"] == task_id for e in queue["entries"]):
            raise bad_request(706, "failed adding task to queue since task is already queued")
        queue["entries"].append({"task": task_id, "added": now()})
        return 1

    def remove_task(self, task_id: str) -> int:
        removed = 0
        for queue in self.docs.docs.values():
            before = len(queue["entries"])
            queue["entries"] = [e for e in queue["entries"] if e["task"] != task_id]
            removed += before - len(queue["entries"])
        return removed

    def remove(self, call: Call) -> dict[str, Any]:
        queue = self.docs.get(call.data.get("queue"))
        before = len(queue["entries"])
        queue["entries"] = [e for e in queue["entries"] if e["task"] != call.data.get("task")]
        if before == len(queue["entries"]):
            raise bad_request(703, "invalid queue id or task not in queue")
        return {"removed": 1}

    def get_next_task(self, call: Call) -> dict[str, Any]:
        """queues.get_next_task: the first entry (or the asked task's), popped; a task stopped
        after it was queued goes back to queued (services/queues.py)."""
        queue = self.docs.get(call.data.get("queue"))
        wanted = call.data.get("task")
        entries = [e for e in queue["entries"] if not wanted or e["task"] == wanted]
        if not entries:
            return {}
        entry = entries[0]
        queue["entries"].remove(entry)
        task = self.tasks.docs.get(entry["task"]) if self.tasks else None
        if task and task["status"] == "stopped":
            task["status"] = "queued"
        info = {"company": task.get("company"), "user": task.get("user")} if task else {}
        return {"entry": entry, **({"task_info": info} if call.data.get("get_task_info") else {})}


class Workers:
    def __init__(self) -> None:
        self.workers: dict[str, dict[str, Any]] = {}

    def handlers(self) -> dict[str, Any]:
        return {
            "workers.register": self.register,
            "workers.unregister": self.unregister,
            "workers.status_report": self.status_report,
            "workers.get_all": lambda call: {"workers": list(self.workers.values())},
            "workers.get_runtime_properties": self.runtime_properties,
            "workers.set_runtime_properties": self.set_runtime_properties,
        }

    def runtime_properties(self, call: Call) -> dict[str, Any]:
        """services/workers.py get_runtime_properties: what a worker set about itself."""
        worker = self.workers.get(call.data.get("worker")) or {}
        return {"runtime_properties": worker.get("runtime_properties", [])}

    def set_runtime_properties(self, call: Call) -> dict[str, Any]:
        worker = self.workers.get(call.data.get("worker"))
        if worker is not None:
            worker["runtime_properties"] = call.data.get("runtime_properties") or []
        return {}

    def register(self, call: Call) -> dict[str, Any]:
        worker = call.data.get("worker")
        if not worker:
            raise bad_request(11, "missing required fields", fields=["worker"])
        self.workers[worker] = {
            "id": worker,
            "user": {"id": call.user},
            "queues": [{"id": q} for q in call.data.get("queues") or []],
            "register_time": now(),
            "last_activity_time": now(),
            "task": None,
        }
        return {}

    def unregister(self, call: Call) -> dict[str, Any]:
        self.workers.pop(call.data.get("worker"), None)
        return {}

    def status_report(self, call: Call) -> dict[str, Any]:
        if call.data.get("worker") not in self.workers:  # auto_register: true
            self.register(call)
        worker = self.workers[call.data["worker"]]
        worker["last_activity_time"] = now()
        task = call.data.get("task")
        worker["task"] = {"id": task} if task else None
        return {}


class Events:
    def __init__(self, tasks: Collection) -> None:
        self.tasks = tasks
        self.by_task: dict[str, list[dict[str, Any]]] = {}

    def handlers(self) -> dict[str, Any]:
        return {
            "events.add_batch": self.add_batch,
            "events.add": lambda call: self.add([call.data]),
            "events.get_task_log": self.get_task_log,
            "events.get_task_single_value_metrics": self.single_values,
            "events.get_task_events": self.get_task_events,
            "events.scalar_metrics_iter_histogram": self.scalar_histogram,
        }

    def add(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        added = 0
        batch: dict[tuple[str, str, str], dict[str, Any]] = {}  # each series' summary
        for event in events:
            task = event.get("task")
            if not task or str(task) not in self.tasks.docs:
                raise bad_request(101, "invalid task id", task=task)
            self.by_task.setdefault(str(task), []).append(event)
            if event.get("type") == "training_stats_scalar" and event.get("value") is not None:
                self._summarise(batch, str(task), event)
            added += 1
        for (task, *keys), summary in batch.items():
            self._update_last_metrics(self.tasks.get(task), keys, summary)
        return {"added": added, "errors": 0, "errors_info": {}}

    def add_batch(self, call: Call) -> dict[str, Any]:
        """services/events.py add_batch: JSON lines, each one event."""
        raw = call.data.get("_lines")
        if raw is None:
            raise bad_request(17, "batch request contains no items")
        return self.add([json.loads(line) for line in raw.splitlines() if line.strip()])

    @staticmethod
    def _summarise(batch: dict[tuple[str, str, str], Any], task: str, event: dict) -> None:
        """One scalar into its series' summary of the batch (event_bll.py
        ``_update_last_scalar_events_for_task``): the latest value by (iteration, time), the
        first by iteration, the lowest and highest with their iterations, count and total."""
        metric, variant = event.get("metric") or "", event.get("variant") or ""
        keys = tuple(hashlib.md5(name.encode()).hexdigest() for name in (metric, variant))
        last = batch.setdefault((task, *keys), {"metric": metric, "variant": variant})
        value, it = float(event["value"]), event.get("iter", 0)
        at = (it, event.get("timestamp", 0))
        last["count"], last["total"] = last.get("count", 0) + 1, last.get("total", 0.0) + value
        if at >= last.get("at", at):
            last |= {"value": value, "at": at}
        for kind, better in (("first", it < last.get("first_iter", it + 1)),
                             ("min", value < last.get("min", value + 1)),
                             ("max", value > last.get("max", value - 1))):  # fmt: skip
            if better:
                last |= {kind: value, f"{kind}_iter": it}

    @staticmethod
    def _update_last_metrics(task: dict[str, Any], keys: list[str], summary: dict) -> None:
        """A batch's summary into the task's ``last_metrics`` (bll/task/utils.py
        ``get_last_metric_updates``): the value set as the batch's latest, the first value only
        once, the lowest and highest when beyond the stored, the mean rounded to 2 places."""
        stored = task.setdefault("last_metrics", {}).setdefault(keys[0], {}).setdefault(keys[1], {})
        stored |= {k: summary[k] for k in ("metric", "variant", "value")}
        if "first_value" not in stored:
            stored |= {
                "first_value": summary["first"],
                "first_value_iteration": summary["first_iter"],
            }
        for kind, beyond in (("min", min), ("max", max)):
            field = f"{kind}_value"
            if field not in stored or beyond(stored[field], summary[kind]) != stored[field]:
                stored |= {field: summary[kind], f"{field}_iteration": summary[f"{kind}_iter"]}
        count = stored.get("count", 0)
        mean = (stored.get("mean_value", 0.0) * count + summary["total"]) / (
            count + summary["count"]
        )
        stored |= {"mean_value": round(mean, 2), "count": count + summary["count"]}

    def scalar_histogram(self, call: Call) -> dict[str, Any]:
        """Each series' values by iteration, in iteration order, single values left out; a
        second event at an iteration replaces the first (the event's id in Elasticsearch is a hash
        of task, iteration, metric and variant: bll/event/event_bll.py)."""
        task_id = call.data.get("task")
        self.tasks.get(task_id)
        series: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
        for e in self.of(task_id, "training_stats_scalar"):
            if e.get("iter", 0) > SINGLE_SCALAR_ITERATION and e.get("value") is not None:
                series[(e["metric"], e["variant"])][e.get("iter", 0)] = float(e["value"])
        out: dict[str, dict[str, Any]] = defaultdict(dict)
        for (metric, variant), by_iter in series.items():
            x = sorted(by_iter)
            out[metric][variant] = {"name": variant, "x": x, "y": [by_iter[i] for i in x]}
        return dict(out)

    def of(self, task_id: str, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.by_task.get(task_id, []) if e.get("type") == kind]

    def get_task_log(self, call: Call) -> dict[str, Any]:
        """events.get_task_log (services/events.py, bll/event/events_iterator.py): a batch from
        the end of the log (``navigate_earlier``, the default: newest first) or from its start
        (oldest first); ``order`` sorts the batch when given."""
        task_id = call.data.get("task")
        self.tasks.get(task_id)
        events = sorted(self.of(task_id, "log"), key=lambda e: e.get("timestamp", 0))
        size = int(call.data.get("batch_size") or 5000)
        earlier = call.data.get("navigate_earlier", True)
        batch = list(reversed(events))[:size] if earlier else events[:size]
        if order := call.data.get("order"):
            batch.sort(key=lambda e: e.get("timestamp", 0), reverse=order == "desc")
        return {"events": batch, "returned": len(batch), "total": len(events)}

    def get_task_events(self, call: Call) -> dict[str, Any]:
        task_id = call.data.get("task")
        kinds = call.data.get("event_type")
        events = [e for e in self.by_task.get(task_id, []) if not kinds or e.get("type") in kinds]
        return {"events": events, "returned": len(events), "total": len(events)}

    def single_values(self, call: Call) -> dict[str, Any]:
        """The task's single values: scalars at iteration -2**31 (Logger.report_single_value)."""
        tasks = []
        for task_id in call.data.get("tasks") or []:
            values = [
                {"metric": e["metric"], "variant": e["variant"], "value": e["value"]}
                for e in self.of(task_id, "training_stats_scalar")
                if e.get("iter") == SINGLE_SCALAR_ITERATION
            ]
            if values:
                tasks.append({"task": task_id, "values": values})
        return {"tasks": tasks}


class Models:
    def __init__(self, projects: Collection) -> None:
        self.docs = Collection(  # database/model/model.py get_all_query_options
            "model",
            (201, "invalid model id"),
            ("project", "task", "framework", "uri", "ready", "tags", "system_tags", "user"),
        )
        self.projects = projects

    def handlers(self) -> dict[str, Any]:
        return {
            "models.create": self.create,
            "models.get_all": lambda call: {"models": self.docs.select(call.data)},
            "models.get_all_ex": lambda call: {"models": self.docs.select(call.data)},
            "models.get_by_id": lambda call: {"model": self.docs.get(call.data.get("model"))},
            "models.edit": self.edit,
            "models.update": self.edit,
            "models.update_for_task": self.update_for_task,
            "models.set_ready": lambda call: self._field(call, ready=True),
            "models.add_or_update_metadata": lambda call: self._field(
                call, metadata={m["key"]: m for m in call.data.get("metadata") or []}
            ),
        }

    def create(self, call: Call) -> dict[str, Any]:
        data = call.data
        doc = {
            "id": new_id(),
            "name": data.get("name") or "",
            "uri": data.get("uri"),
            "framework": data.get("framework"),
            "design": data.get("design"),
            "labels": data.get("labels") or {},
            "tags": data.get("tags") or [],
            "system_tags": data.get("system_tags") or [],
            "project": data.get("project"),
            "task": data.get("task"),
            "parent": data.get("parent"),
            "comment": data.get("comment"),
            "ready": bool(data.get("ready")),
            "user": call.user,
            "created": now(),
        }
        return {"id": self.docs.add(doc)["id"], "created": True}

    def edit(self, call: Call) -> dict[str, Any]:
        model = self.docs.get(call.data.get("model"))
        fields = {k: v for k, v in call.data.items() if k not in ("model",)}
        model.update(fields)
        return {"updated": 1, "fields": fields}

    def _field(self, call: Call, **fields: Any) -> dict[str, Any]:
        self.docs.get(call.data.get("model")).update(fields)
        return {"updated": 1}

    def update_for_task(self, call: Call) -> dict[str, Any]:
        """models.update_for_task: create (or update) the task's output model from a URI."""
        data = call.data
        task_id = data.get("task")
        if data.get("override_model_id"):
            model = self.docs.get(data["override_model_id"])
        else:
            model = self.docs.get(self.create(call)["id"])
        model.update({k: data[k] for k in ("uri", "name", "comment", "tags") if k in data})
        model["task"] = task_id
        return {"id": model["id"], "created": not data.get("override_model_id"), "updated": 1}
