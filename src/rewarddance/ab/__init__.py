"""Human A/B voting on pairs of generated images: the pair-set contract, a SQLite vote store and a small web app.

Torch-free (numpy, FastAPI, sqlite3 only), so the page runs from the serving install. The pairs come from
``rewarddance eval generators`` (``pairs.json`` + images); the votes go back into training through
``rewarddance data import ab-votes``.
"""
