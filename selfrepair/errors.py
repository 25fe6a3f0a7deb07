"""The one exception type the CLI turns into a single clear line and a non-zero exit."""


class SelfRepairError(Exception):
    """A problem the user can act on: bad input, a model it cannot reach, a missing file.

    The message is the whole story; the CLI prints it as one line, with no traceback.
    """
