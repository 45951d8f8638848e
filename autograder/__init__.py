"""The course's autograder: grades submitted notebooks against the reference solutions.

``python -m autograder grade SUBMISSION --chapter CHAPTER_ID --json RESULT.json`` grades
one file; ``python -m autograder batch ROOT --out DIR`` a class. See README.md here.
"""

__version__ = "1.0.0"
