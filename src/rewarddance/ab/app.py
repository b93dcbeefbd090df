"""The A/B page: FastAPI routes over a pair set and a ``VoteStore`` (plain HTML/JS pages in ``static/``).

Routes:
  GET  /               the voting page (prompt, two images, buttons and keys 1 / 2 / 0 tie / s skip, progress)
  GET  /results        win rates with 95% intervals, a chart, the reward model's agreement, every vote
  GET  /images/<path>  an image of the pair set
  POST /api/next       {rater} -> the next pair this rater has not answered (sides randomised) or {done: true}
  POST /api/vote       {rater, token, choice: left|right|tie|skip} -> recorded (committed before the reply)
  GET  /api/results    the results as JSON
  GET  /healthz
Errors are JSON ``{"error": {"code", "message"}}`` with a 4xx status for bad, unknown or replayed requests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from .pairs import PairSet
from .stats import mean_interval, outcome_rates
from .store import VoteError, VoteStore, check_rater

STATIC = Path(__file__).resolve().parent / "static"
PAGES = {"/": "vote.html", "/results": "results.html"}
ASSETS = ("ab.js", "ab.css")
RECENT_VOTES = 2000  # rows of the results page's vote table


class NextRequest(BaseModel):
    rater: str


class VoteRequest(BaseModel):
    rater: str
    token: str
    choice: str


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": status, "message": message}}, status_code=status)


def results(store: VoteStore, pair_set: PairSet) -> dict:
    """Win / tie / loss of B against A over the votes (skips excluded), each with a 95% bootstrap interval; how
    often the served reward's order agrees with decided votes; counts per rater; every vote."""
    votes = store.votes()
    pairs = pair_set.by_id()
    preferences = [v for v in votes if v.choice != "skip"]
    outcomes = np.array([v.choice for v in preferences], dtype=object)
    agree = [
        float((pairs[v.pair_id].reward_b > pairs[v.pair_id].reward_a) == (v.choice == "b"))
        for v in preferences
        if v.choice in ("a", "b")
        and None not in (pairs[v.pair_id].reward_a, pairs[v.pair_id].reward_b)
        and pairs[v.pair_id].reward_b != pairs[v.pair_id].reward_a
    ]
    raters: dict[str, dict[str, int]] = {}
    for v in votes:
        raters.setdefault(v.rater, {c: 0 for c in ("a", "b", "tie", "skip")})[v.choice] += 1
    return {
        "name": pair_set.name,
        "a": pair_set.a,
        "b": pair_set.b,
        "pairs": len(pair_set.pairs),
        "votes": len(preferences),
        "skips": len(votes) - len(preferences),
        "rates": outcome_rates(outcomes),
        "reward_agreement": mean_interval(np.array(agree)) | {"n": len(agree)},
        "raters": raters,
        "recent": [
            {
                "rater": v.rater,
                "pair_id": v.pair_id,
                "prompt": pairs[v.pair_id].prompt,
                "choice": v.choice,
                "revisions": v.revisions,
            }
            for v in votes[-RECENT_VOTES:]
        ],
    }


def create_app(pair_set: PairSet, store: VoteStore, order: str = "uncertain") -> FastAPI:
    app = FastAPI(title="rewarddance A/B votes", docs_url=None, redoc_url=None)
    sequence = pair_set.ordered(order)
    pairs = pair_set.by_id()

    @app.exception_handler(VoteError)
    async def vote_error(_: Request, err: VoteError) -> JSONResponse:
        return _error(err.status, str(err))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0] if err.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
        return _error(422, f"{where or 'body'}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, err: StarletteHTTPException) -> JSONResponse:
        return _error(err.status_code, str(err.detail))

    for route, page in PAGES.items():
        app.add_api_route(route, _file_route(STATIC / page), methods=["GET"], include_in_schema=False)
    for asset in ASSETS:
        app.add_api_route(f"/static/{asset}", _file_route(STATIC / asset), methods=["GET"], include_in_schema=False)

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok", "pairs": len(sequence)}

    @app.get("/images/{path:path}")
    def image(path: str):
        file = (pair_set.root / path).resolve()
        if not file.is_relative_to(pair_set.root) or not file.is_file():
            return _error(404, f"no image {path!r} in the pair set")
        return FileResponse(file, headers={"cache-control": "public, max-age=3600"})

    def progress(rater: str) -> dict:
        return {"answered": len(store.answered(rater)), "total": len(sequence)}

    @app.post("/api/next")
    def next_pair(req: NextRequest) -> dict:
        rater = check_rater(req.rater)
        answered = store.answered(rater)
        pair_id = next((p for p in sequence if p not in answered), None)
        if pair_id is None:
            return {"done": True, "progress": progress(rater)}
        shown = store.assign(rater, pair_id)
        pair = pairs[pair_id]
        left, right = (pair.image_a, pair.image_b) if shown.left_side == "a" else (pair.image_b, pair.image_a)
        return {
            "done": False,
            "token": shown.token,
            "prompt": pair.prompt,
            "left": f"/images/{left}",
            "right": f"/images/{right}",
            "progress": progress(rater),
        }

    @app.post("/api/vote")
    def vote(req: VoteRequest) -> dict:
        recorded = store.vote(req.token, req.rater, req.choice)
        return {"recorded": req.choice, "revisions": recorded.revisions, "progress": progress(req.rater)}

    @app.get("/api/results")
    def results_json() -> dict:
        return results(store, pair_set)

    return app


def _file_route(path: Path):
    def serve() -> FileResponse:
        return FileResponse(path, headers={"cache-control": "no-cache"})

    return serve
