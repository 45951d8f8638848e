"""The course's autograder: grades submitted notebooks against the reference solutions.

``python -m autograder grade SUBMISSION --chapter CHAPTER_ID --json RESULT.json`` grades
one file; ``python -m autograder batch ROOT --out DIR`` a class. See README.md here.

A grade goes through stages, one module each: :mod:`autograder.reader` reads the
submission, :mod:`autograder.plan` builds the cases and the reference's outputs,
:mod:`autograder.client` runs the submission in a :mod:`autograder.worker` process
(confined by :mod:`autograder.sandbox`), :mod:`autograder.grader` judges what came back
and :mod:`autograder.results` writes Gradescope's result.
"""

__version__ = "1.1.0"


class GradingError(Exception):
    """No result can be written (unknown chapter, unreadable arguments or files); the
    message says what to change."""
