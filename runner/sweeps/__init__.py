"""Parameter sweeps: a grid of DVC experiments from one comment, one comparison, one commit to apply.

`/retrain key=v1,v2 ...` runs every point on its own runner pod and keeps one comparison comment up
to date; `/apply <experiment>` commits a point's values to the PR's branch.
"""
