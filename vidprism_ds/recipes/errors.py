"""The one error type of the recipes: bad input that the user can fix.

Command-line front ends catch ``RecipeError`` and print its message as a single line with a non-zero
exit status; anything else is a bug and keeps its traceback.
"""


class RecipeError(ValueError):
    """Bad input (a file, an option, a label): the message says what and where, in one line."""
