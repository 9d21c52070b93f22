"""The study: train and evaluate several configurations, then report what the table says."""
