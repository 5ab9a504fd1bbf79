"""Errors that decide what happens to a message; free of I/O so domain code can raise them."""


class Rejected(Exception):
    """This event can never be applied (unknown contract, conflicting resend, invalid quantity...).

    The transaction rolls back and the message goes to the dead-letter topic with this reason.
    """
