"""The shapes world: a synthetic text-to-image domain with known ground truth (DESIGN.md 5).

A library, not only a command: ``world`` (vocabulary and domain prior), ``prompts`` (scene specs and their
paraphrased descriptions), ``shifted`` (the evaluation-only shifted world's wording and mix), ``render``
(scenes to pixels in seven styles), ``candidates`` (controlled errors), ``gold`` (the four gold scores),
``raters`` (simulated Likert raters and Bradley-Terry preferences) and ``synth`` (the parallel, resumable
dataset writer).
"""
