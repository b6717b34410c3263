"""The training report: built inside the job from DVC's view of head and base, published by the bot."""
