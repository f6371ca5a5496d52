"""What a run hands over besides metrics: alerts, files, artifacts."""
