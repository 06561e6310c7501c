"""Studies: runs over axes and seeds (runner), cohorts trained in lockstep (cohort), their tables
and figures (aggregate)."""
