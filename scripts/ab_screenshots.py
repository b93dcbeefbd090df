"""Screenshots of the A/B voting page and its results page for the docs, taken by the headless system Chromium.

Starts `rewarddance ab serve` on PAIRS with a fresh vote database, casts the first --votes answers of a few named
raters through the HTTP API (each rater prefers the side with the higher served reward, with a tie now and then,
so the results page has something to show), then opens both pages and saves docs/ab_vote_page.png and
docs/ab_results_page.png.

Example: python scripts/ab_screenshots.py --pairs runs/ab/base-step750-vs-base --out docs
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from ab_harness import AbServer, chromium, wait_for

from rewarddance.ab.pairs import PairSet


def cast(url: str, pair_set: PairSet, rater: str, n: int) -> None:
    for i in range(n):
        shown = httpx.post(f"{url}/api/next", json={"rater": rater}).json()
        if shown["done"]:
            return
        left_image = shown["left"].removeprefix("/images/")
        pair = next(p for p in pair_set.pairs if left_image in (p.image_a, p.image_b))
        better = "a" if (pair.reward_a or 0) >= (pair.reward_b or 0) else "b"
        left_side = "a" if left_image == pair.image_a else "b"
        choice = "tie" if i % 5 == 4 else ("left" if left_side == better else "right")
        response = httpx.post(f"{url}/api/vote", json={"rater": rater, "token": shown["token"], "choice": choice})
        response.raise_for_status()


def main() -> int:
    from selenium.webdriver.common.by import By

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--votes", type=int, default=12, help="answers per rater before the screenshots")
    args = parser.parse_args()
    pair_set = PairSet.read(args.pairs)
    work = Path(tempfile.mkdtemp(prefix="ab-shots-"))
    server = AbServer(pair_set.root, work / "votes.sqlite", work / "server.log")
    driver = chromium(width=980, height=820)
    try:
        for rater in ("ada", "grace", "alan"):
            cast(server.url, pair_set, rater, args.votes)
        driver.get(server.url + "/")
        driver.find_element(By.ID, "rater").send_keys("linus")
        driver.find_element(By.ID, "start").click()
        state = lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state")  # noqa: E731
        wait_for(driver, lambda d: state(d) == "ready", what="the vote page")
        wait_for(driver, lambda d: d.execute_script("return document.getElementById('right').complete"))
        driver.save_screenshot(str(args.out / "ab_vote_page.png"))
        driver.get(server.url + "/results")
        wait_for(driver, lambda d: state(d) == "ready", what="the results page")
        driver.save_screenshot(str(args.out / "ab_results_page.png"))
    finally:
        driver.quit()
        server.stop()
    print(f"wrote {args.out / 'ab_vote_page.png'} and {args.out / 'ab_results_page.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
