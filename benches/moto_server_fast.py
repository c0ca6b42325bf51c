#!/usr/bin/env python3
"""`moto_server` with two fixes, for `worker_bench --moto-fix`: SQS in time linear in the queue.

moto 5 builds a queue's attribute map — walking every message of the queue three times, for the
ApproximateNumberOfMessages{,NotVisible,Delayed} counts — in two places that need none of those
counts, so a backlog of n messages costs it O(n^2) to fill and O(n^2) to drain:

- for every message a ReceiveMessage returns, `SQSBackend.is_message_valid_based_on_retention_period`
  reads the retention period through `get_queue_attributes(["MessageRetentionPeriod"])`, which
  builds the map three times;
- every SendMessage (each S3 notification) reads `ContentBasedDeduplication` from the map.

Measured with moto 5.2.1, a receive-get-delete loop drained ~30 objects/s at 500 messages, ~5/s
at 3,000 and ~1.5/s at 9,000, whatever the client did. Here the retention check reads the
attribute directly (the check itself is unchanged), and while a message is being sent the three
counts, which sending never reads, are not computed.

Nothing else about moto is changed: the worker still talks to moto's S3, SQS and KMS over HTTP,
and a GetQueueAttributes still counts every message.
"""

import functools
import sys
import threading

from moto.core.utils import unix_time
from moto.sqs import models

_sending = threading.local()


def _within_retention(self, queue_name, message):
    queue = self.get_queue(queue_name)
    retain_until = int(queue.message_retention_period) + message.sent_timestamp / 1000
    return retain_until > unix_time()


models.SQSBackend.is_message_valid_based_on_retention_period = _within_retention


def _skipped_while_sending(count):
    def get(queue):
        return 0 if getattr(_sending, "active", False) else count.fget(queue)

    return property(get)


for _name in (
    "approximate_number_of_messages",
    "approximate_number_of_messages_not_visible",
    "approximate_number_of_messages_delayed",
):
    setattr(models.Queue, _name, _skipped_while_sending(getattr(models.Queue, _name)))


def _without_counts(send):
    @functools.wraps(send)
    def wrapper(*args, **kwargs):
        outer = getattr(_sending, "active", False)  # a batch sends each of its messages
        _sending.active = True
        try:
            return send(*args, **kwargs)
        finally:
            _sending.active = outer

    return wrapper


models.SQSBackend.send_message = _without_counts(models.SQSBackend.send_message)
models.SQSBackend.send_message_batch = _without_counts(models.SQSBackend.send_message_batch)

from moto.server import main  # noqa: E402  (after the patches, so the server uses them)

if __name__ == "__main__":
    sys.exit(main())
