"""Errors that decide what happens to a message; free of I/O so domain code can raise them."""


class Rejected(Exception):
    """This event can never be applied (unknown contract, conflicting resend, invalid quantity...).

    The transaction rolls back and the message goes to the dead-letter topic with this reason.
    """


class DependencyNotReady(Exception):
    """Something this event needs has not arrived yet (the payment a chargeback takes back, the
    invoice a credit note corrects). Its text says what it waits for.

    The event is parked (shared.inbox), so that the messages behind it go on, and re-driven until
    what it waits for has arrived; after the service's park timeout it is dead-lettered.
    """
