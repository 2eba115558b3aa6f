"""One module per `smolforge` command: what the command takes as typed (its request), the checks and messages
that belong to the terminal, and the calls into the pipeline and the stages that do the work.

Only `cli.py` imports these modules (one per command, when that command runs); nothing below imports them.
"""
