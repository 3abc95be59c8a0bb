"""The study's page (Starlette; served by uvicorn from ``realrag human-eval serve``). See human_eval_server."""

from __future__ import annotations

import secrets

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from realrag_core.human_eval.server import RATER, Study, VoteRefused, VoteStore

SESSION_COOKIE = "realrag_session"
CONTROLS = {"pairwise": "which", "gold": "which", "real_or_generated": "real_or_generated", "rating": "rating"}

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Image study</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}
 #images{display:flex;gap:2em;justify-content:center;margin:1em 0}
 #images img{width:320px;height:320px;object-fit:contain;image-rendering:pixelated;border:1px solid #ccc}
 button{font-size:1.05em;margin:.25em;padding:.5em 1em} .scale button{min-width:2.6em}
 #which,#real_or_generated{text-align:center} #progress{color:#666} #error{color:#b00} kbd{border:1px solid #aaa;border-radius:3px;padding:0 .3em}
</style></head><body>
<h1>Image study</h1>
<div id="login"><label>Your rater id <input id="rater" maxlength="64" autocomplete="off"></label>
 <button id="start">Start</button> <span class="hint">letters, digits, . _ -</span></div>
<div id="task" hidden>
 <p id="progress"></p><h2 id="question"></h2><p id="prompt"></p>
 <div id="images"></div>
 <div id="which" hidden><button data-answer="a">Left <kbd>1</kbd></button>
  <button data-answer="tie">Can't tell <kbd>0</kbd></button><button data-answer="b">Right <kbd>2</kbd></button></div>
 <div id="real_or_generated" hidden><button data-answer="real">Real picture <kbd>r</kbd></button>
  <button data-answer="generated">Generated <kbd>g</kbd></button></div>
 <div id="rating" hidden>
  <p>Faithfulness (1 = not the object, 7 = exactly it): <span class="scale" data-scale="faithfulness"></span></p>
  <p>Realism (1 = clearly artificial, 7 = looks real): <span class="scale" data-scale="realism"></span></p>
  <p>Type two digits: faithfulness, then realism.</p></div>
</div>
<p id="done" hidden>All tasks done. Thank you!</p><p id="error"></p>
<script>
let current = null, shownAt = 0, rating = {}, typed = [];
const $ = (id) => document.getElementById(id);
for (const span of document.querySelectorAll('.scale')) for (let i = 1; i <= 7; i++) {
  const b = document.createElement('button'); b.textContent = i;
  b.onclick = () => { rating[span.dataset.scale] = i; if (rating.faithfulness && rating.realism) vote(rating); };
  span.appendChild(b);
}
for (const b of document.querySelectorAll('[data-answer]')) b.onclick = () => vote({answer: b.dataset.answer});
async function next() {
  const rater = localStorage.getItem('rater');
  if (!rater) return;
  const r = await fetch('api/next?rater=' + encodeURIComponent(rater), {credentials: 'same-origin'});
  const data = await r.json();
  if (!r.ok) { $('error').textContent = data.error; return; }
  $('login').hidden = true; $('error').textContent = '';
  if (!data.task) { $('task').hidden = true; $('done').hidden = false; return; }
  current = data; rating = {}; typed = [];
  $('task').hidden = false;
  $('progress').textContent = `Task ${data.progress.done + 1} of ${data.progress.total}`;
  $('question').textContent = data.task.question;
  $('prompt').textContent = data.task.prompt ? 'Prompt: ' + data.task.prompt : '';
  const box = $('images'); box.replaceChildren();
  for (const t of data.task.images) { const img = document.createElement('img'); img.src = 'image/' + t; img.alt = ''; box.appendChild(img); }
  for (const c of ['which', 'real_or_generated', 'rating']) $(c).hidden = c !== data.task.controls;
  shownAt = performance.now();
}
async function vote(values) {
  if (!current) return;
  const body = {task: current.task.token, rater: localStorage.getItem('rater'), csrf: current.csrf,
                seconds: (performance.now() - shownAt) / 1000, ...values};
  current = null;
  const r = await fetch('api/vote', {method: 'POST', credentials: 'same-origin',
    headers: {'Content-Type': 'application/json'}, body: JSON.stringify(body)});
  if (!r.ok) { $('error').textContent = (await r.json()).error; }
  next();
}
$('start').onclick = () => { localStorage.setItem('rater', $('rater').value.trim()); next(); };
const WHICH_KEYS = {'1': 'a', 'ArrowLeft': 'a', '2': 'b', 'ArrowRight': 'b', '0': 'tie', 't': 'tie'};
document.addEventListener('keydown', (e) => {
  if (!current || e.target.tagName === 'INPUT') return;
  const c = current.task.controls, k = e.key;
  if (c === 'which' && WHICH_KEYS[k]) vote({answer: WHICH_KEYS[k]});
  else if (c === 'real_or_generated' && (k === 'r' || k === 'g')) vote({answer: k === 'r' ? 'real' : 'generated'});
  else if (c === 'rating' && /^[1-7]$/.test(k)) { typed.push(+k);
    if (typed.length === 2) vote({faithfulness: typed[0], realism: typed[1]}); }
});
next();
</script></body></html>
"""


def create_app(study: Study, votes: VoteStore, allowed_hosts=("127.0.0.1", "localhost")) -> Starlette:
    """The page, its JSON API and the images; every response carries opaque tokens only."""

    def session_of(request: Request) -> str:
        return request.cookies.get(SESSION_COOKIE, "")

    async def page(request: Request) -> Response:
        response = HTMLResponse(PAGE, headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"})
        if not session_of(request):
            response.set_cookie(SESSION_COOKIE, secrets.token_urlsafe(24), httponly=True, samesite="strict")
        return response

    async def next_task(request: Request) -> Response:
        rater = request.query_params.get("rater", "")
        if not RATER.match(rater):
            return JSONResponse({"error": "a rater id is 1-64 letters, digits, '.', '_' or '-'"}, status_code=400)
        session = session_of(request)
        if not session:
            return JSONResponse({"error": "no session: reload the page"}, status_code=403)
        done = votes.voted(study.study, rater)
        task = study.next_task(rater, done)
        progress = {"done": len(done & {t["task_id"] for t in study.tasks}), "total": len(study.tasks)}
        body = {"progress": progress, "csrf": study.csrf(rater, session), "task": None}
        if task is not None:
            body["task"] = {
                "token": study.token("task", task["task_id"]),
                "controls": CONTROLS[task["kind"]],
                "question": task["question"],
                "prompt": task["prompt"] if task["kind"] == "rating" else "",
                "images": [t for t in (study.side_token(task, "a"), study.side_token(task, "b")) if t],
            }
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    async def vote(request: Request) -> Response:
        try:
            payload = await request.json()
        except ValueError:
            return JSONResponse({"error": "the body must be JSON"}, status_code=400)
        if not isinstance(payload, dict):
            return JSONResponse({"error": "the body must be a JSON object"}, status_code=400)
        try:
            task, rater, values = study.check_vote(payload, session_of(request))
            votes.add(study.study, task["task_id"], rater, **values)
        except VoteRefused as err:
            status = 409 if "already voted" in str(err) else 403 if "CSRF" in str(err) else 400
            return JSONResponse({"error": str(err)}, status_code=status)
        return JSONResponse({"ok": True})

    async def image(request: Request) -> Response:
        try:
            png = study.image_png(request.path_params["token"])
        except KeyError:
            return JSONResponse({"error": "no such image"}, status_code=404)
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    return Starlette(
        routes=[
            Route("/", page),
            Route("/api/next", next_task),
            Route("/api/vote", vote, methods=["POST"]),
            Route("/image/{token}", image),
        ],
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))],
    )
