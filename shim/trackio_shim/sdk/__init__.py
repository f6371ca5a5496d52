"""The wandb-shaped surface: Run, config and summary, run start, alerts, files, artifacts, Api."""
