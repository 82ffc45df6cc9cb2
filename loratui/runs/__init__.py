"""Training runs as the app sees them, without torch: the registry of known runs (``registry``),
folding a run's events into its state (``state``), following a live run's files (``follower``),
starting a detached trainer (``launch``) and the headless ``loratui train`` path (``headless``).
"""
