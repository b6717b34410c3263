"""The shipping flow, whole: a merged pull request becomes the model production serves.

PR merged, `/deploy` or `/rollback` (`flow`) → GitHub deployment and deploy.yml dispatched → the
job builds and pushes the image (`build`) → `workflow_run` completed → the image reference is read
(`image`) and rolled out (`rollout`, `manifests`, `kube`) → deployment status with the URL.
A closed pull request's preview is torn down. `k8s/` holds the manifests of the bot and runners.
"""
