"""Studies: a question, a base configuration, what varies and the seeds, expanded and run."""

from trainlab.study.run import StudyResult, plan_study, run_study, study_status
from trainlab.study.spec import PlannedRun, StudySpec, builtin_studies, expand, read_study

__all__ = ["PlannedRun", "StudyResult", "StudySpec", "builtin_studies", "expand", "plan_study", "read_study", "run_study",
           "study_status"]
