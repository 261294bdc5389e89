"""SQL of the annotation hot path (next task, submit), written once per process instead of compiled per request.

Profiling the next-task + submit cycle through gunicorn showed most of the web process's CPU in building and
compiling ORM querysets (a token lookup with three EXISTS annotations cost 3 ms of CPU, the same rows through a
plain SELECT 0.25 ms). The statements here began as the ones the ORM produced; the lease and the submit have since
become single statements of their own on PostgreSQL (data-modifying WITH queries), which the ORM cannot express.
tests/unit/test_annotation_hotpath.py checks that they read and write the same rows as the ORM would; table and
column names come from the models' _meta and rows become model instances through the
backend's converters (Model.from_db), so the rest of the code sees ordinary, partially loaded instances.
Portable SQL: PostgreSQL (the production database) gets FOR UPDATE [OF ...] [SKIP LOCKED]; SQLite (the embedded
default) has no row locks and serializes writers with BEGIN IMMEDIATE instead (see services.py).
"""

from __future__ import annotations

from functools import cache

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from rest_framework.authtoken.models import Token

from aesplatform.catalog.models import Image

from .models import Annotation, Assignment, AssignmentState, Campaign, CampaignState, Task, TaskState


def _qn(name: str) -> str:
    return connection.ops.quote_name(name)


def _table(model) -> str:
    return _qn(model._meta.db_table)


def _col(model, name: str) -> str:
    return _qn(model._meta.get_field(name).column)


def _lock(of: str, *, skip_locked: bool = False) -> str:
    if not connection.features.has_select_for_update:
        return ""
    clause = " FOR UPDATE"
    if connection.features.has_select_for_update_of:
        clause += f" OF {of}"
    if skip_locked and connection.features.has_select_for_update_skip_locked:
        clause += " SKIP LOCKED"
    return clause


class Columns:
    """Some (or all) concrete columns of a model under a table alias: the SELECT list and the row -> instance."""

    def __init__(self, model, alias: str, names: list[str] | None = None):
        self.model, self.alias = model, alias
        wanted = {model._meta.get_field(n) for n in names} if names else None
        # in the model's field order: Model.from_db pairs a subset of values with the concrete fields in that order
        self.fields = [f for f in model._meta.concrete_fields if wanted is None or f in wanted]
        self.attnames = [f.attname for f in self.fields]

    def __len__(self) -> int:
        return len(self.fields)

    def select(self) -> str:
        return ", ".join(f"{self.alias}.{_qn(f.column)}" for f in self.fields)

    @cache  # noqa: B019  per vendor, for the life of the process
    def _converters(self, vendor: str):
        out = []
        for i, f in enumerate(self.fields):
            col = f.get_col(self.model._meta.db_table)
            found = connection.ops.get_db_converters(col) + f.get_db_converters(connection)
            if found:
                out.append((i, found, col))
        return out

    def build(self, values):
        conn = _db()
        values = list(values)
        for i, converters, col in self._converters(conn.vendor):
            for convert in converters:
                values[i] = convert(values[i], col, conn)
        return self.model.from_db(conn.alias, self.attnames, values)


def _literal(value: str) -> str:
    """A constant of the code (a state name) written into the SQL: the planner then matches the partial indexes
    (WHERE state = 'open' / 'leased') even in a prepared statement's generic plan."""
    assert value.isidentifier(), value
    return f"'{value}'"


def _db():
    """This thread's default connection itself. `connection` is a proxy that looks the connection up (a
    thread-local read) on every attribute access, also inside the Django functions it is passed to."""
    return connections[DEFAULT_DB_ALIAS]


def _dt(value):
    return _db().ops.adapt_datetimefield_value(value)


def _fetch(sql: str, params) -> list[tuple]:
    with _db().cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _execute(sql: str, params) -> int:
    with _db().cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


# --- authentication: the token's user and their group names in one SELECT -------------------------------------------


@cache
def _user_columns() -> Columns:
    return Columns(get_user_model(), "u")


@cache
def _token_sql(vendor: str) -> str:
    User = get_user_model()
    groups = User._meta.get_field("groups")
    through = groups.remote_field.through
    return (
        f"SELECT {_user_columns().select()}, g.{_col(Group, 'name')} FROM {_table(Token)} t "
        f"INNER JOIN {_table(User)} u ON u.{_qn(User._meta.pk.column)} = t.{_col(Token, 'user')} "
        f"LEFT JOIN {_table(through)} ug ON ug.{_qn(groups.m2m_column_name())} = u.{_qn(User._meta.pk.column)} "
        f"LEFT JOIN {_table(Group)} g ON g.{_qn(Group._meta.pk.column)} = ug.{_qn(groups.m2m_reverse_name())} "
        f"WHERE t.{_col(Token, 'key')} = %s"
    )


def token_user_and_groups(key: str):
    """(user, [group names]) of an API token, or None when no token has this key."""
    rows = _fetch(_token_sql(connection.vendor), [key])
    if not rows:
        return None
    columns = _user_columns()
    user = columns.build(rows[0][: len(columns)])
    return user, [row[len(columns)] for row in rows if row[len(columns)] is not None]


# --- next task --------------------------------------------------------------------------------------------------------

_CAMPAIGN = Columns(Campaign, "c")


@cache
def _campaign_sql(vendor: str) -> str:
    through = Campaign.annotators.through
    return (
        f"SELECT {_CAMPAIGN.select()}, EXISTS(SELECT 1 FROM {_table(through)} m WHERE m.{_col(through, 'campaign')} = "
        f"c.{_col(Campaign, 'id')} AND m.{_col(through, 'user')} = %s) FROM {_table(Campaign)} c "
        f"WHERE c.{_col(Campaign, 'id')} = %s"
    )


def campaign_with_membership(*, campaign_id: int, user_id: int) -> tuple[Campaign, bool] | None:
    rows = _fetch(_campaign_sql(connection.vendor), [user_id, campaign_id])
    if not rows:
        return None
    return _CAMPAIGN.build(rows[0][: len(_CAMPAIGN)]), bool(rows[0][len(_CAMPAIGN)])


@cache
def _campaign_for_next_sql(vendor: str) -> str:
    # The campaign, the membership, whether any lease (of any campaign) has run out, and the caller's live leases in
    # it (one row each, or one row with NULL). The expiry probe walks the partial index assignment_live_leases.
    through = Campaign.annotators.through
    return (
        f"SELECT {_CAMPAIGN.select()}, EXISTS(SELECT 1 FROM {_table(through)} m WHERE m.{_col(through, 'campaign')} = "
        f"c.{_col(Campaign, 'id')} AND m.{_col(through, 'user')} = %s), "
        f"EXISTS(SELECT 1 FROM {_table(Assignment)} x "
        f"WHERE x.{_col(Assignment, 'state')} = {_literal(AssignmentState.LEASED)} "
        f"AND x.{_col(Assignment, 'leased_until')} <= %s), l.id "
        f"FROM {_table(Campaign)} c LEFT JOIN ({_live_sql(vendor)}) l ON 1 = 1 "
        f"WHERE c.{_col(Campaign, 'id')} = %s ORDER BY l.id"
    )


def campaign_for_next_task(*, campaign_id: int, user_id: int, now) -> tuple[Campaign, bool, bool, list[int]] | None:
    """(campaign, whether the user is one of its annotators, whether any lease had run out at `now`, ids of the
    user's leases in the campaign live at `now`)."""
    at = _dt(now)
    rows = _fetch(_campaign_for_next_sql(connection.vendor), [user_id, at, campaign_id, user_id, at, campaign_id])
    if not rows:
        return None
    n = len(_CAMPAIGN)
    first = rows[0]
    return (
        _CAMPAIGN.build(first[:n]), bool(first[n]), bool(first[n + 1]),
        [r[n + 2] for r in rows if r[n + 2] is not None],
    )


@cache
def _expired_sql(vendor: str) -> str:
    return (
        f"SELECT a.{_col(Assignment, 'id')}, a.{_col(Assignment, 'task')} FROM {_table(Assignment)} a "
        f"WHERE a.{_col(Assignment, 'state')} = {_literal(AssignmentState.LEASED)} "
        f"AND a.{_col(Assignment, 'leased_until')} <= %s "
        f"ORDER BY a.{_col(Assignment, 'id')} LIMIT %s" + _lock("a", skip_locked=True)
    )


def expired_leases_locked(*, now, limit: int) -> list[tuple[int, int]]:
    """(assignment id, task id) of leases whose time is up, locked, skipping those another transaction holds."""
    return _fetch(_expired_sql(connection.vendor), [_dt(now), limit])


@cache
def _live_sql(vendor: str) -> str:
    return (
        f"SELECT a.{_col(Assignment, 'id')} FROM {_table(Assignment)} a INNER JOIN {_table(Task)} t "
        f"ON t.{_col(Task, 'id')} = a.{_col(Assignment, 'task')} "
        f"WHERE t.{_col(Task, 'campaign')} = %s AND a.{_col(Assignment, 'annotator')} = %s "
        f"AND a.{_col(Assignment, 'state')} = {_literal(AssignmentState.LEASED)} "
        f"AND a.{_col(Assignment, 'leased_until')} > %s "
        f"ORDER BY a.{_col(Assignment, 'id')}"
    )


def live_lease_ids(*, campaign_id: int, annotator_id: int, now) -> list[int]:
    rows = _fetch(_live_sql(connection.vendor), [campaign_id, annotator_id, _dt(now)])
    return [r[0] for r in rows]


_TASK = Columns(Task, "t", ["id", "campaign", "image", "is_gold"])
_IMAGE = Columns(Image, "i", ["id", "width", "height"])


@cache
def _takeable_tasks() -> str:
    # params: campaign, redundancy, annotator. The open tasks below the redundancy this annotator never had.
    return (
        f"FROM {_table(Task)} t INNER JOIN {_table(Image)} i ON i.{_col(Image, 'id')} = t.{_col(Task, 'image')} "
        f"WHERE t.{_col(Task, 'campaign')} = %s AND t.{_col(Task, 'state')} = {_literal(TaskState.OPEN)} "
        f"AND (t.{_col(Task, 'submitted_count')} + t.{_col(Task, 'active_lease_count')}) < %s "
        f"AND NOT EXISTS(SELECT 1 FROM {_table(Assignment)} a "
        f"WHERE a.{_col(Assignment, 'task')} = t.{_col(Task, 'id')} "
        f"AND a.{_col(Assignment, 'annotator')} = %s)"
    )


def _next_task_sql(vendor: str) -> str:
    # Walks the partial index task_open_by_priority (campaign, -priority, id) WHERE state = 'open'.
    return (
        f"SELECT {_TASK.select()}, {_IMAGE.select()} {_takeable_tasks()} "
        f"ORDER BY t.{_col(Task, 'priority')} DESC, t.{_col(Task, 'id')} ASC LIMIT 1" + _lock("t", skip_locked=True)
    )


def takeable_task_exists(*, campaign_id: int, redundancy: int, annotator_id: int) -> bool:
    """Whether a task this annotator may take exists, row locks of other transactions aside: when the leasing
    statement (which skips locked rows) found none, a true answer means they were all locked for the moment."""
    return bool(_fetch(f"SELECT EXISTS(SELECT 1 {_takeable_tasks()})", [campaign_id, redundancy, annotator_id])[0][0])


def next_task_locked(*, campaign_id: int, redundancy: int, annotator_id: int) -> Task | None:
    """The first open task (priority order) below `redundancy` that this annotator never had, row-locked, skipping
    rows other transactions hold; with its image's size loaded."""
    rows = _fetch(_next_task_sql(connection.vendor), [campaign_id, redundancy, annotator_id])
    if not rows:
        return None
    task = _TASK.build(rows[0][: len(_TASK)])
    task.image = _IMAGE.build(rows[0][len(_TASK):])
    return task


@cache
def _lease_taken_sql(vendor: str) -> str:
    n = _col(Task, "active_lease_count")
    return f"UPDATE {_table(Task)} SET {n} = {n} + 1 WHERE {_col(Task, 'id')} = %s"


def task_lease_taken(*, task_id: int) -> None:
    _execute(_lease_taken_sql(connection.vendor), [task_id])


# --- submit -----------------------------------------------------------------------------------------------------------

_ASSIGNMENT = Columns(Assignment, "a")
_LEASED_TASK = Columns(Task, "t", ["id", "campaign", "image"])
_LEASE_CAMPAIGN = Columns(Campaign, "c", ["id", "mode", "state", "redundancy", "lease_seconds"])


@cache
def _own_assignment_sql(vendor: str) -> str:
    return (
        f"SELECT {_ASSIGNMENT.select()}, {_LEASED_TASK.select()}, {_LEASE_CAMPAIGN.select()} "
        f"FROM {_table(Assignment)} a "
        f"INNER JOIN {_table(Task)} t ON t.{_col(Task, 'id')} = a.{_col(Assignment, 'task')} "
        f"INNER JOIN {_table(Campaign)} c ON c.{_col(Campaign, 'id')} = t.{_col(Task, 'campaign')} "
        f"WHERE a.{_col(Assignment, 'id')} = %s" + _lock("a")
    )


def assignment_locked(*, assignment_id: int) -> Assignment | None:
    """The assignment, row-locked, with its task (id, campaign, image) and campaign (mode, state, redundancy)."""
    rows = _fetch(_own_assignment_sql(connection.vendor), [assignment_id])
    if not rows:
        return None
    row = rows[0]
    a, t = len(_ASSIGNMENT), len(_ASSIGNMENT) + len(_LEASED_TASK)
    assignment = _ASSIGNMENT.build(row[:a])
    task = _LEASED_TASK.build(row[a:t])
    task.campaign = _LEASE_CAMPAIGN.build(row[t:])
    assignment.task = task
    return assignment


@cache
def _task_submitted_sql(vendor: str) -> str:
    submitted, leases, state = _col(Task, "submitted_count"), _col(Task, "active_lease_count"), _col(Task, "state")
    return (
        f"UPDATE {_table(Task)} SET {submitted} = {submitted} + 1, "
        f"{leases} = CASE WHEN {leases} > 0 THEN {leases} - 1 ELSE 0 END, "
        f"{state} = CASE WHEN {submitted} + 1 >= %s THEN %s ELSE {state} END "
        f"WHERE {_col(Task, 'id')} = %s"
    )


def task_submitted(*, task_id: int, redundancy: int) -> None:
    """Count a submission and release its lease in one UPDATE (the row lock it takes makes it atomic); the task is
    done once `redundancy` annotators submitted."""
    _execute(_task_submitted_sql(connection.vendor), [redundancy, TaskState.DONE, task_id])


@cache
def _finish_sql(vendor: str) -> str:
    return (
        f"UPDATE {_table(Assignment)} SET {_col(Assignment, 'state')} = %s, {_col(Assignment, 'finished_at')} = %s "
        f"WHERE {_col(Assignment, 'id')} = %s"
    )


def assignment_finished(*, assignment: Assignment, state: str, now) -> None:
    """The lease's end (submitted, skipped, flagged): the state and finished_at of the row, and of the instance."""
    _execute(_finish_sql(connection.vendor), [state, _dt(now), assignment.pk])
    assignment.state, assignment.finished_at = state, now


# --- inserts ----------------------------------------------------------------------------------------------------------


@cache
def _insert_fields(model) -> list:
    return [f for f in model._meta.concrete_fields if not f.primary_key]


@cache
def _insert_plan(model, vendor: str):
    fields = _insert_fields(model)
    returning = connection.features.can_return_columns_from_insert
    sql = (
        f"INSERT INTO {_table(model)} ({', '.join(_qn(f.column) for f in fields)}) "
        f"VALUES ({', '.join(['%s'] * len(fields))})"
        + (f" RETURNING {_qn(model._meta.pk.column)}" if returning else "")
    )
    return fields, sql, returning


def _insert_values(obj, fields, conn) -> list:
    """The values Model.save(force_insert=True) would write: field pre_save (auto_now_add, defaults) and the fields'
    database preparation."""
    return [f.get_db_prep_save(f.pre_save(obj, True), conn) for f in fields]


def _inserted(obj, pk, conn) -> None:
    obj.pk = pk
    obj._state.adding = False
    obj._state.db = conn.alias


def insert(obj) -> None:
    """INSERT one new row the way Model.save(force_insert=True) does (the generated primary key set on the
    instance), without the query compiler. Sends no pre_save/post_save signals (the annotation app has none)."""
    model, conn = type(obj), _db()
    fields, sql, returning = _insert_plan(model, conn.vendor)
    values = _insert_values(obj, fields, conn)
    with conn.cursor() as cursor:
        cursor.execute(sql, values)
        pk = (
            cursor.fetchone()[0] if returning
            else conn.ops.last_insert_id(cursor, model._meta.db_table, model._meta.pk.column)
        )
    _inserted(obj, pk, conn)


# --- the lease and the submit as one statement each (PostgreSQL) ------------------------------------------------------
#
# On PostgreSQL a lease (lock the next task, count the lease, insert the assignment) and a submit (finish the lease,
# count the submission, insert the annotation) are each one statement with data-modifying WITH queries. A statement
# is atomic by itself, so neither needs BEGIN and COMMIT around it: 1 round trip to the database instead of 5, under
# the same row locks taken in the same order (task then assignment for a lease; assignment then task for a submit).
# Profiling the cycle through gunicorn showed the round trips, not the SQL, as the cost: each is a wait, a GIL
# hand-off and a context switch on both sides. SQLite has no data-modifying WITH queries and keeps the statement-
# by-statement path in one transaction (services.py).


def writes_in_one_statement() -> bool:
    return _db().vendor == "postgresql"


def _fetch_one_statement(sql: str, params) -> list[tuple]:
    """Run a writing statement. In autocommit mode (a request) it is its own transaction; inside a caller's
    transaction a savepoint confines its failure (a UNIQUE violation the caller answers) to itself."""
    if not _db().in_atomic_block:
        return _fetch(sql, params)
    with transaction.atomic():
        return _fetch(sql, params)


@cache
def _lease_sql(vendor: str) -> str:
    picked = [f"p{k}" for k in range(len(_TASK) + len(_IMAGE))]  # the task's columns first, its id the very first
    task_field = Assignment._meta.get_field("task")
    values = ", ".join("p.p0" if f is task_field else "%s" for f in _insert_fields(Assignment))
    leases = _col(Task, "active_lease_count")
    return (
        f"WITH p ({', '.join(picked)}) AS ({_next_task_sql(vendor)}), "
        f"counted AS (UPDATE {_table(Task)} SET {leases} = {leases} + 1 "
        f"FROM p WHERE {_table(Task)}.{_col(Task, 'id')} = p.p0), "
        f"leased AS (INSERT INTO {_table(Assignment)} ({', '.join(_qn(f.column) for f in _insert_fields(Assignment))}) "
        f"SELECT {values} FROM p RETURNING {_qn(Assignment._meta.pk.column)}) "
        f"SELECT p.*, leased.{_qn(Assignment._meta.pk.column)} FROM p CROSS JOIN leased"
    )


def task_lease_in_one_statement(*, assignment: Assignment, campaign_id: int, redundancy: int) -> bool:
    """Lease the first open task (the choice of next_task_locked) to `assignment.annotator` in one statement: the
    task row locked (SKIP LOCKED), its lease counted, `assignment` inserted for it. False when no task is left;
    else `assignment` is saved, with its task (and the task's image size) set."""
    conn = _db()
    fields = [f for f in _insert_fields(Assignment) if f.name != "task"]
    values = _insert_values(assignment, fields, conn)
    rows = _fetch_one_statement(_lease_sql(conn.vendor), [campaign_id, redundancy, assignment.annotator_id, *values])
    if not rows:
        return False
    row = rows[0]
    task = _TASK.build(row[: len(_TASK)])
    task.image = _IMAGE.build(row[len(_TASK): len(_TASK) + len(_IMAGE)])
    assignment.task = task
    _inserted(assignment, row[-1], conn)
    return True


@cache
def _submit_sql(vendor: str) -> str:
    a, t, c = _table(Assignment), _table(Task), _table(Campaign)
    submitted, leases, state = _col(Task, "submitted_count"), _col(Task, "active_lease_count"), _col(Task, "state")
    from_finished = {Annotation._meta.get_field("task"): "finished.task_id",
                     Annotation._meta.get_field("campaign"): "finished.campaign_id"}
    fields = _insert_fields(Annotation)
    values = ", ".join(from_finished.get(f, "%s") for f in fields)
    return (
        # the lease ends as submitted if it is live, this annotator's, in an active campaign of the expected mode:
        # checked on the assignment row as it is once locked (a concurrent change is re-read before the check)
        f"WITH finished AS (UPDATE {a} SET {_col(Assignment, 'state')} = %s, {_col(Assignment, 'finished_at')} = %s "
        f"FROM {t} t INNER JOIN {c} c ON c.{_col(Campaign, 'id')} = t.{_col(Task, 'campaign')} "
        f"WHERE {a}.{_col(Assignment, 'id')} = %s AND t.{_col(Task, 'id')} = {a}.{_col(Assignment, 'task')} "
        f"AND {a}.{_col(Assignment, 'annotator')} = %s "
        f"AND {a}.{_col(Assignment, 'state')} = {_literal(AssignmentState.LEASED)} "
        f"AND {a}.{_col(Assignment, 'leased_until')} > %s "
        f"AND c.{_col(Campaign, 'state')} = {_literal(CampaignState.ACTIVE)} AND c.{_col(Campaign, 'mode')} = %s "
        f"RETURNING {a}.{_col(Assignment, 'task')} AS task_id, t.{_col(Task, 'campaign')} AS campaign_id, "
        f"t.{_col(Task, 'image')} AS image_id, c.{_col(Campaign, 'redundancy')} AS redundancy), "
        # the submission counted and the lease released in one UPDATE; the task is done at `redundancy`
        f"counted AS (UPDATE {t} SET {submitted} = {t}.{submitted} + 1, "
        f"{leases} = CASE WHEN {t}.{leases} > 0 THEN {t}.{leases} - 1 ELSE 0 END, "
        f"{state} = CASE WHEN {t}.{submitted} + 1 >= finished.redundancy "
        f"THEN {_literal(TaskState.DONE)} ELSE {t}.{state} END "
        f"FROM finished WHERE {t}.{_col(Task, 'id')} = finished.task_id), "
        f"stored AS (INSERT INTO {_table(Annotation)} ({', '.join(_qn(f.column) for f in fields)}) "
        f"SELECT {values} FROM finished RETURNING {_qn(Annotation._meta.pk.column)}) "
        f"SELECT stored.{_qn(Annotation._meta.pk.column)}, finished.task_id, finished.campaign_id, finished.image_id "
        f"FROM stored CROSS JOIN finished"
    )


def annotation_submit_in_one_statement(*, annotation: Annotation, mode: str, now) -> bool:
    """Store `annotation` for its assignment in one statement: the lease finished as submitted, the submission
    counted on its task (done at the campaign's redundancy), the annotation inserted; provided that, when its row is
    locked, the lease is live, `annotation.annotator`'s, and in an active campaign of `mode`. False (nothing
    written) otherwise: the caller decides on a locked read. Sets the annotation's task (id, campaign, image)."""
    conn = _db()
    fields = [f for f in _insert_fields(Annotation) if f.name not in ("task", "campaign")]
    values = _insert_values(annotation, fields, conn)
    at = _dt(now)
    rows = _fetch_one_statement(
        _submit_sql(conn.vendor),
        [AssignmentState.SUBMITTED, at, annotation.assignment_id, annotation.annotator_id, at, mode, *values],
    )
    if not rows:
        return False
    pk, task_id, campaign_id, image_id = rows[0]
    annotation.task = Task(id=task_id, campaign_id=campaign_id, image_id=image_id)
    _inserted(annotation, pk, conn)
    return True


# --- the submit response, without a ModelSerializer per request -------------------------------------------------------


@cache
def _datetime_field():
    from rest_framework import serializers

    return serializers.DateTimeField()


def annotation_payload(annotation) -> dict:
    """What AnnotationSerializer(annotation).data gives (a test keeps the two equal), at a fraction of the CPU:
    DRF builds a ModelSerializer's fields anew for every instance."""
    task = annotation.task
    return {
        "id": annotation.pk,
        "task": annotation.task_id,
        "campaign_id": task.campaign_id,
        "image_id": task.image_id,
        "annotator": annotation.annotator_id,
        "assignment": annotation.assignment_id,
        "is_expert": annotation.is_expert,
        "supersedes": annotation.supersedes_id,
        "idempotency_key": str(annotation.idempotency_key),
        "time_spent_ms": annotation.time_spent_ms,
        "ui_version": annotation.ui_version,
        "created_at": _datetime_field().to_representation(annotation.created_at),
        "scores": {k: v for k, v in annotation.scores_dict().items() if v is not None},
    }
