"""The one exception both halves raise for bad user input.

Its message is shown to the user as a single line, so it names the problem and the fix; the front door
turns it into a non-zero exit before anything in the results tree is touched.
"""


class InputError(Exception):
    """Bad user input: an unknown option, a missing file, a path that escapes the results tree."""
