"""Human evaluation, part 2: the vote store (SQLAlchemy: SQLite by default, any database URL) and the local page
that collects votes (Starlette), issue 20.

Blind by construction: a rater's browser sees a task token, the question, the prompt and image tokens, never an
arm, retriever, path, retrieved id or seed. Tokens are HMACs under the study's own secret (``secret`` in its
folder, made once), so a token of another study, or a made-up one, names no task. Each vote is committed when it
arrives, one per rater and task (a unique key: a replay is refused, a restart resumes where the rater was).
Writes are guarded by a CSRF token bound to the rater and the browser session (a cookie), and the Host header by
an allowlist (Starlette's TrustedHostMiddleware), for when the page is exposed behind a proxy.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa
from PIL import Image

RATER = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
ANSWERS = {"pairwise": {"a", "b", "tie"}, "gold": {"a", "b", "tie"}, "real_or_generated": {"real", "generated"}}
SCALE = range(1, 8)  # the paper's 7-point scales
_META = sa.MetaData()
VOTES = sa.Table(
    "votes",
    _META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("study", sa.String(32), nullable=False),
    sa.Column("task_id", sa.String(32), nullable=False),
    sa.Column("rater", sa.String(64), nullable=False),
    sa.Column("answer", sa.String(16)),  # pairwise / gold: a | b | tie; real_or_generated: real | generated
    sa.Column("faithfulness", sa.Integer),  # rating: 1-7
    sa.Column("realism", sa.Integer),  # rating: 1-7
    sa.Column("seconds_on_task", sa.Float),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.UniqueConstraint("study", "task_id", "rater", name="one_vote_per_rater_and_task"),
)


class VoteRefused(ValueError):
    """A vote that is not stored, with the reason given to the browser."""


class VoteStore:
    """Votes in a real database: ``sqlite:///path`` by default, a Postgres URL where several machines vote."""

    def __init__(self, url: str):
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine = sa.create_engine(url)
        if self.engine.dialect.name == "sqlite":  # several browser sessions at once: wait for the lock, never lose

            @sa.event.listens_for(self.engine, "connect")
            def _wal(conn, _record):
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA busy_timeout=10000")

        _META.create_all(self.engine)

    def add(self, study: str, task_id: str, rater: str, **values) -> None:
        try:
            with self.engine.begin() as conn:  # committed before the browser hears back
                conn.execute(
                    VOTES.insert().values(study=study, task_id=task_id, rater=rater, created_at=time.time(), **values)
                )
        except sa.exc.IntegrityError as err:
            raise VoteRefused("this rater has already voted on this task") from err

    def voted(self, study: str, rater: str) -> set[str]:
        with self.engine.connect() as conn:
            q = sa.select(VOTES.c.task_id).where(VOTES.c.study == study, VOTES.c.rater == rater)
            return {r[0] for r in conn.execute(q)}

    def rows(self, study: str | None = None) -> list[dict]:
        with self.engine.connect() as conn:
            q = sa.select(VOTES).order_by(VOTES.c.id)
            if study is not None:
                q = q.where(VOTES.c.study == study)
            return [dict(r._mapping) for r in conn.execute(q)]


@dataclass
class Study:
    """One study version's tasks (``human_eval_tasks``), its secret and the images it shows."""

    folder: Path
    rag_dir: Path

    def __post_init__(self):
        self.folder = Path(self.folder)
        table = pq.read_table(self.folder / "tasks.parquet")
        self.tasks = [t for t in table.to_pylist() if t["shown"]]
        if not self.tasks:
            raise ValueError(f"{self.folder} has no task to show")
        self.study = self.tasks[0]["study"]
        self.secret = _study_secret(self.folder)
        self.by_token = {self.token("task", t["task_id"]): t for t in self.tasks}
        self.images: dict[str, tuple[str, str, tuple[int, int] | None]] = {}
        generated_size = None
        for t in self.tasks:
            for side in ("a", "b"):
                if t[f"{side}_source"] == "rag" and generated_size is None:
                    with Image.open(self.rag_dir / t[f"{side}_path"]) as im:
                        generated_size = im.size
        for t in self.tasks:
            for side in ("a", "b"):
                source, path = t[f"{side}_source"], t[f"{side}_path"]
                if source is not None:
                    # real pictures are shown at the generated images' size and encoding (PNG), as the study asks
                    self.images[self.token("image", f"{source}:{path}")] = (source, path, generated_size)

    def token(self, kind: str, value: str) -> str:
        digest = hmac.new(self.secret, f"{self.study}:{kind}:{value}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:18]).decode()

    def side_token(self, task: dict, side: str) -> str | None:
        source = task[f"{side}_source"]
        return None if source is None else self.token("image", f"{source}:{task[f'{side}_path']}")

    def csrf(self, rater: str, session: str) -> str:
        return self.token("csrf", f"{rater}:{session}")

    def next_task(self, rater: str, done: set[str]) -> dict | None:
        """The rater's next task: every rater sees the tasks in an order of their own (drawn from the secret)."""
        left = [t for t in self.tasks if t["task_id"] not in done]
        return min(left, key=lambda t: self.token("order", f"{rater}:{t['task_id']}"), default=None)

    def image_png(self, token: str) -> bytes:
        if token not in self.images:
            raise KeyError(token)
        source, path, size = self.images[token]
        full = self.rag_dir / path if source == "rag" else Path(path)
        with Image.open(full) as im:
            im = im.convert("RGB")
            if size is not None and im.size != size:
                im = im.resize(size, Image.Resampling.BICUBIC)
            buf = io.BytesIO()
            im.save(buf, format="PNG")  # no metadata of the source file travels with it
        return buf.getvalue()

    def check_vote(self, payload: dict, session: str) -> tuple[dict, str, dict]:
        """(task, rater, values to store) for a vote, or ``VoteRefused`` with the reason."""
        rater = str(payload.get("rater", ""))
        if not RATER.match(rater):
            raise VoteRefused("a rater id is 1-64 letters, digits, '.', '_' or '-'")
        if not session or not hmac.compare_digest(str(payload.get("csrf", "")), self.csrf(rater, session)):
            raise VoteRefused("missing or wrong CSRF token: reload the page")
        task = self.by_token.get(str(payload.get("task", "")))
        if task is None:
            raise VoteRefused("no such task in this study (another study's, or a forged token)")
        kind = task["kind"]
        if kind == "rating":
            values = {}
            for scale in ("faithfulness", "realism"):
                value = payload.get(scale)
                if not isinstance(value, int) or isinstance(value, bool) or value not in SCALE:
                    raise VoteRefused(f"{scale} must be a whole number from 1 to 7")
                values[scale] = value
        else:
            answer = payload.get("answer")
            if answer not in ANSWERS[kind]:
                raise VoteRefused(f"answer must be one of {sorted(ANSWERS[kind])}")
            values = {"answer": answer}
        seconds = payload.get("seconds")
        if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and 0 <= seconds < 86400:
            values["seconds_on_task"] = float(seconds)
        return task, rater, values


def _study_secret(folder: Path) -> bytes:
    path = folder / "secret"
    if not path.is_file():
        tmp = folder / f".secret.{os.getpid()}"
        tmp.write_bytes(secrets.token_bytes(32))
        tmp.chmod(0o600)
        try:
            os.link(tmp, path)  # first writer wins; a concurrent start reads the same secret
        except FileExistsError:
            pass
        tmp.unlink()
    return path.read_bytes()


def votes_url(cfg, store) -> str:
    """The vote database's URL: ``human_eval.database_url`` or SQLite in the artifacts' human_eval folder."""
    return cfg.human_eval.database_url or f"sqlite:///{store.human_eval_dir / 'votes.sqlite'}"


def export_votes(study: Study, votes: VoteStore, out: Path) -> Path:
    """Every vote of the study with its task's lineage (arms, retriever ids, paths, answer key), as Parquet or CSV
    by ``out``'s suffix."""
    tasks = {t["task_id"]: t for t in pq.read_table(study.folder / "tasks.parquet").to_pylist()}
    rows = []
    for v in votes.rows(study.study):
        t = tasks[v["task_id"]]
        rows.append(
            {
                **{k: v[k] for k in ("study", "task_id", "rater", "answer", "faithfulness", "realism")},
                "seconds_on_task": v["seconds_on_task"],
                "created_at": v["created_at"],
                **{k: t[k] for k in t if k not in ("study", "task_id", "answer")},
                "answer_key": t["answer"],
            }
        )
    table = pa.Table.from_pylist(rows) if rows else pa.table({"study": pa.array([], pa.string())})
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".csv":
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, out)
    else:
        pq.write_table(table, out)
    return out


def votes_state(cfg, store) -> str | None:
    """``<study>:<number of its votes>`` for the current study (what the votes sensor compares), None before any
    study exists. Reads the database only; never creates it."""
    from realrag_core.human_eval.tasks import current_study

    try:
        folder = current_study(store.human_eval_dir)
    except FileNotFoundError:
        return None
    url = votes_url(cfg, store)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        return f"{folder.name}:0"
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("votes"):
                return f"{folder.name}:0"
            n = conn.execute(sa.select(sa.func.count()).select_from(VOTES).where(VOTES.c.study == folder.name))
            return f"{folder.name}:{n.scalar_one()}"
    finally:
        engine.dispose()
