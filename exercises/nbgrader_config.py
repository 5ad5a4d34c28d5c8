"""nbgrader configuration for the closekit exercises: this folder is the course root.

Every path is absolute (computed from this file), so nbgrader commands work from any folder and say
nothing about a relative root; `python -m closekit.exercises.jupyter_setup --course exercises` (which
`bash course.sh open` runs) makes nbgrader and the formgrader load this file wherever they start.
"""

import os

c = get_config()  # noqa: F821 (nbgrader provides it)
HERE = os.path.dirname(os.path.abspath(__file__))

c.CourseDirectory.course_id = "closekit"
c.CourseDirectory.root = HERE
# The instructor versions hold the solutions and stored verdicts: their folder says so, so a student who
# browses the course knows what they open. The released versions are what students work on.
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "student"

# The exchange that release_assignment, fetch_assignment, submit and collect share. On one machine it is
# a folder of the course (not nbgrader's system default, /srv/nbgrader/exchange); on JupyterHub set
# CLOSEKIT_EXCHANGE (or c.Exchange.root) to the folder every user can reach.
c.Exchange.root = os.environ.get("CLOSEKIT_EXCHANGE", os.path.join(HERE, "exchange"))

# A solution region becomes a comment and `pass`: the student version runs top to bottom without a
# traceback, each unanswered question says "not answered yet", and its test cell scores zero.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\npass"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Experiments take milliseconds; a student's function is stopped by the lab after 5 s per peer.
c.ExecutePreprocessor.timeout = 120
c.ExecutePreprocessor.kernel_name = "python3"
# No widget state in graded notebooks: the feedback HTML then shows each question's static text/html
# (its text and choices) instead of an empty widget that needs JavaScript from the internet.
c.Execute.store_widget_state = False

# Feedback is made here and read in the student's copy of the course (exercises/student/NAME/feedback/<time>/):
# its links to chapters are re-pointed there, or to CLOSEKIT_CHAPTERS where the course sets one (a hub does).
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
    "closekit.exercises.feedback.ChapterLinks",
]
