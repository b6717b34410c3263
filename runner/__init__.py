"""The training flow, whole: a pull request's change becomes a report on it.

PR opened or pushed (`training.on_pull_request`) or `/retrain` (`training.Retrain`) → check run
queued and train.yml dispatched (`checks`, `bot.runs`) → `workflow_job` queued → a runner pod
(`jobs`, `podspec`, `kube`, `classes`; `reconcile` mends what webhooks missed) → the job builds the
report (`report.build`) → `workflow_run` completed → the bot publishes it (`report.publish`).
`metrics` counts runner pods, their wait and the reports published.
"""
