"""The A/B voting page in a real headless Chromium: votes cast with the keyboard and the mouse survive a killed
server and show on the results page; the store keeps one vote per rater per pair; bad and replayed requests get a
4xx with a message. Set AB_SCREENSHOT_DIR to keep screenshots of both pages."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import httpx
import pytest
from ab_harness import AbServer, chromium, tiny_pair_set, wait_for

from rewarddance.ab.pairs import PairSet, PairSetError
from rewarddance.ab.store import VoteError, VoteStore


@pytest.fixture()
def pair_set(tmp_path: Path) -> PairSet:
    return tiny_pair_set(tmp_path / "pairs")


def _db_votes(db: Path) -> dict[tuple[str, str], tuple[str, str, int]]:
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT rater, pair_id, choice, left_side, revisions FROM votes").fetchall()
    return {(r, p): (c, left, n) for r, p, c, left, n in rows}


def test_votes_by_keyboard_and_mouse_survive_a_killed_server(pair_set: PairSet, tmp_path: Path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    db = tmp_path / "votes.sqlite"
    server = AbServer(pair_set.root, db, tmp_path / "server.log")
    driver = chromium()
    shots = os.environ.get("AB_SCREENSHOT_DIR")
    try:
        driver.get(server.url + "/")
        driver.find_element(By.ID, "rater").send_keys("alice")
        driver.find_element(By.ID, "start").click()
        ready = lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") in ("ready", "done")  # noqa: E731
        wait_for(driver, ready, what="the first pair")
        cast = []  # (prompt shown, on-screen choice)
        # --order uncertain: the smallest |R_b - R_a| first (the last pair of the tiny set)
        assert driver.find_element(By.ID, "prompt").text == "prompt number 5"
        if shots:
            driver.save_screenshot(str(Path(shots) / "ab_vote_page.png"))
        actions = [("key", "1", "left"), ("key", "2", "right"), ("key", "0", "tie"), ("key", "s", "skip")]
        actions += [("click", "vote-right", "right"), ("click", "left", "left")]
        for how, what, choice in actions:
            token = driver.find_element(By.TAG_NAME, "body").get_attribute("data-token")
            cast.append((driver.find_element(By.ID, "prompt").text, choice))
            if how == "key":
                ActionChains(driver).send_keys(what).perform()
            else:
                driver.find_element(By.ID, what).click()
            wait_for(
                driver,
                lambda d, t=token: (
                    d.find_element(By.TAG_NAME, "body").get_attribute("data-token") != t
                    or d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "done"
                ),
                what=f"the vote {choice} to be recorded",
            )
        wait_for(driver, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "done")
        assert "6 of 6" in driver.find_element(By.ID, "progress-text").text

        server.kill()  # SIGKILL right after the last answer: nothing may be lost
        votes = _db_votes(db)
        prompts = {p.prompt: p.pair_id for p in pair_set.pairs}
        assert len(votes) == 6 and len({prompts[p] for p, _ in cast}) == 6
        for prompt, choice in cast:
            stored, left, revisions = votes[("alice", prompts[prompt])]
            expected = {"left": left, "right": "b" if left == "a" else "a"}.get(choice, choice)
            assert stored == expected and revisions == 0, (prompt, choice, stored, left)

        server = AbServer(pair_set.root, db, tmp_path / "server.log")
        driver.get(server.url + "/results")
        wait_for(driver, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "ready")
        rows = driver.find_elements(By.CSS_SELECTOR, "#votes tbody tr")
        shown = {
            (r.get_attribute("data-rater"), r.get_attribute("data-pair")): r.get_attribute("data-choice") for r in rows
        }
        assert shown == {key: value[0] for key, value in votes.items()}
        preferences = [v[0] for v in votes.values() if v[0] != "skip"]
        summary = driver.find_element(By.ID, "summary").text
        assert summary.startswith(f"{len(preferences)} votes (1 skips) on 6 pairs")
        assert len(driver.find_elements(By.CSS_SELECTOR, "#chart rect")) == 3
        api = httpx.get(server.url + "/api/results").json()
        b_share = sum(c == "b" for c in preferences) / len(preferences)
        assert api["rates"]["b_preferred"]["mean"] == pytest.approx(b_share)
        low, high = api["rates"]["b_preferred"]["ci95"]
        assert low <= b_share <= high
        if shots:
            driver.save_screenshot(str(Path(shots) / "ab_results_page.png"))
        # the rater's progress survived the restart too: nothing left to answer
        done = httpx.post(server.url + "/api/next", json={"rater": "alice"}).json()
        assert done["done"] is True and done["progress"] == {"answered": 6, "total": 6}
    finally:
        driver.quit()
        server.stop()


def test_bad_and_replayed_requests_get_4xx_with_a_message(pair_set: PairSet, tmp_path: Path):
    db = tmp_path / "votes.sqlite"
    server = AbServer(pair_set.root, db, tmp_path / "server.log", order="file")
    try:
        post = lambda path, body: httpx.post(server.url + path, json=body, timeout=10)  # noqa: E731
        shown = post("/api/next", {"rater": "bob"}).json()
        again = post("/api/next", {"rater": "bob"}).json()  # the page reloaded: the same pair, a new token
        assert shown["prompt"] == again["prompt"] == "prompt number 0" and shown["token"] != again["token"]
        assert post("/api/vote", {"rater": "bob", "token": shown["token"], "choice": "left"}).status_code == 200
        replay = post("/api/vote", {"rater": "bob", "token": shown["token"], "choice": "left"})
        assert replay.status_code == 409 and "replayed" in replay.json()["error"]["message"]
        # voting on the same pair again (through the second showing) updates the vote, never duplicates it
        assert post("/api/vote", {"rater": "bob", "token": again["token"], "choice": "tie"}).json()["revisions"] == 1
        assert _db_votes(db)[("bob", "p000")][0] == "tie" and len(_db_votes(db)) == 1
        cases = [
            ({"rater": "bob", "token": "nope", "choice": "left"}, 404, "unknown token"),
            ({"rater": "bob", "token": again["token"], "choice": "up"}, 422, "choice must be one of"),
            ({"rater": "<script>", "token": again["token"], "choice": "left"}, 422, "rater name"),
            ({"rater": "eve", "token": again["token"], "choice": "left"}, 403, "another rater"),
            ({"rater": "bob", "choice": "left"}, 422, "token"),
        ]
        for body, status, message in cases:
            response = post("/api/vote", body)
            assert response.status_code == status and message in response.json()["error"]["message"], body
        bad_json = httpx.post(
            server.url + "/api/vote", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert bad_json.status_code == 422 and "error" in bad_json.json()
        assert httpx.get(server.url + "/images/../pairs.json").status_code == 404
        assert httpx.get(server.url + "/images/a/000.png").headers["content-type"] == "image/png"
    finally:
        server.stop()


def test_store_is_bound_to_one_pair_set_and_the_pair_set_is_checked(pair_set: PairSet, tmp_path: Path):
    from fastapi.testclient import TestClient

    from rewarddance.ab.app import create_app

    db = tmp_path / "votes.sqlite"
    store = VoteStore(db, pair_set)
    empty = TestClient(create_app(pair_set, store)).get("/api/results")  # no vote yet: rates unknown, not an error
    assert empty.status_code == 200 and empty.json()["rates"]["b_preferred"]["mean"] is None
    store.close()
    other = PairSet(pair_set.root, "another", "x", "y", pair_set.pairs)
    with pytest.raises(VoteError, match="holds votes on pair set 'tiny'"):
        VoteStore(db, other)
    (pair_set.root / "pairs.json").write_text('{"format_version": 99}')
    with pytest.raises(PairSetError, match="format_version"):
        PairSet.read(pair_set.root)
    with pytest.raises(PairSetError, match=r"no pairs\.json"):
        PairSet.read(tmp_path)
