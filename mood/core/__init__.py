"""The science core: data, protocols, models, pretext tasks, the training engine, features, scores,
metrics and statistics, and the cache and atomic writes they store through. Imports nothing from
``mood.experiments`` or ``mood.book``."""
