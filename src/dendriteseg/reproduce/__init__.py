"""The paper's study in one call: baselines, untuned and searched CNNs, scored and reported.

>>> from dendriteseg.reproduce import reproduce
>>> result = reproduce("study", budget="tiny")  # doctest: +SKIP
>>> result.files  # doctest: +SKIP
[PosixPath('study/table2.csv'), PosixPath('study/report.md'), PosixPath('study/report.html')]
"""

from dendriteseg.reproduce.plan import BUDGETS, StudyBudget, study_budget
from dendriteseg.reproduce.run import StudyResult, reproduce

__all__ = ["BUDGETS", "StudyBudget", "StudyResult", "reproduce", "study_budget"]
