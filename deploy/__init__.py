"""The shipping flow, whole: a merged pull request becomes the model production serves.

PR merged, `/deploy` or `/rollback` (`flow`) → GitHub deployment and deploy.yml dispatched → the
job appends the Bento as one layer to the serving base and pushes it over the registry's API
(`build`, `layer`, `append`, `registry`, `serving_base`; a full build only for a Bento the base
cannot serve) → `workflow_run` completed → the image reference is read (`image`) and rolled out
under the repository's own names (`rollout`, `manifests`, `kube`) → deployment status with the URL;
`metrics` counts and times it. A closed pull request's preview is torn down. `images/` holds the
Containerfiles, `k8s/` the manifests of the bot and runners.
"""
