"""Errors that decide what happens to a message; free of I/O so domain code can raise them."""


class Rejected(Exception):
    """This event can never be applied (unknown contract, conflicting resend, invalid quantity...).

    The transaction rolls back and the message goes to the dead-letter topic with this reason.
    """


class DependencyNotReady(Exception):
    """Something this event needs has not arrived yet (e.g. a contract snapshot on another topic).

    Retried with backoff like a transient failure, never dead-lettered: it will arrive.
    """
