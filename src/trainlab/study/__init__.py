"""Studies: a question, a base configuration, what varies and the seeds, expanded and run."""

from trainlab.lazy import lazy_getattr

_HOMES = {
    "StudyResult": "run", "load_study": "run", "plan_study": "run", "run_study": "run", "study_status": "run",
    "Verdict": "verdicts", "verdict_table": "verdicts",
    "PlannedRun": "spec", "StudySpec": "spec", "builtin_studies": "spec", "expand": "spec", "read_study": "spec",
}

__all__ = sorted(_HOMES)

__getattr__ = lazy_getattr(__name__, globals(), _HOMES)
