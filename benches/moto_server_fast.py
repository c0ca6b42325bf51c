#!/usr/bin/env python3
"""`moto_server` with one fix, for `worker_bench --moto-fix`: SQS receives in time linear in the queue.

moto 5's `SQSBackend.is_message_valid_based_on_retention_period` runs for every message a
ReceiveMessage returns. To read the queue's retention period it calls
`get_queue_attributes(["MessageRetentionPeriod"])`, which builds every attribute of the queue —
three times — and each build walks all of the queue's messages three times over (visible, in
flight, delayed). Draining a backlog of n messages therefore costs moto O(n^2): ~30 objects/s at
500 messages, ~5/s at 3,000, ~1.5/s at 9,000, whatever the client does. Reading the attribute
directly gives the same answer (the check is unchanged) without the walks.

Nothing else about moto is changed: the worker still talks to moto's S3, SQS and KMS over HTTP.
"""

import sys

from moto.core.utils import unix_time
from moto.sqs import models


def _within_retention(self, queue_name, message):
    queue = self.get_queue(queue_name)
    retain_until = int(queue.message_retention_period) + message.sent_timestamp / 1000
    return retain_until > unix_time()


models.SQSBackend.is_message_valid_based_on_retention_period = _within_retention

from moto.server import main  # noqa: E402  (after the patch, so the server uses it)

if __name__ == "__main__":
    sys.exit(main())
