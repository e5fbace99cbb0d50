"""Pictures and pages for people: the inspect images, evaluation plots and the self-contained HTML report.

The top sub-package: it may draw on `learn`, `store` and `video`, and nothing in features/ depends on it.
"""
