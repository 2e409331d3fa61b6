"""The book: the chapter runner, the records of a run, editions, the headline and README block, and
plots. Imports from ``mood.experiments`` and ``mood.core``."""
