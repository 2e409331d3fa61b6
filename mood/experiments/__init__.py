"""The experiments: stage configurations and profiles, the resolver that turns them into one run's
configuration, the MOOD pipeline, baselines, ablations, Unleashing Mask, probes and verdict rules.
Imports from ``mood.core`` only."""
