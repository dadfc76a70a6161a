"""The MLTrack dashboard: a local Panel app over an experiment folder."""
