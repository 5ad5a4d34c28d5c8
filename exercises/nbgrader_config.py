"""nbgrader configuration for the closekit exercises (this directory is the course root)."""

c = get_config()  # noqa: F821 (nbgrader provides it)

c.CourseDirectory.course_id = "closekit"
c.CourseDirectory.root = "."

# A solution region becomes a comment and `pass`: the student version runs top to bottom without a
# traceback, each unanswered question says "not answered yet", and its test cell scores zero.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\npass"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Experiments take milliseconds; a student's function is stopped by the lab after 5 s per peer.
c.ExecutePreprocessor.timeout = 120
c.ExecutePreprocessor.kernel_name = "python3"
