"""Commands sent over the bus, with durable replies (docs/guides/commands-over-the-bus.md).

A sender stores a ``CommandRequested`` (``request_for``) in the same append as its own
events; its relay publishes it to the target's command topic as a command message. The
target's ``CommandReceiver`` runs the command under its inbox and stores the reply in
the same append as the command's events; its relay publishes the reply to the sender's
reply topic. ``CommandSender.send`` does all of it for a service that is not a saga.
"""

from eventcore.messaging.commands.accepted import AcceptedCommands
from eventcore.messaging.commands.answering import ResultOf
from eventcore.messaging.commands.outbox import CommandEnvelope, decode_command_envelope
from eventcore.messaging.commands.receiver import CommandReceiver, ReceiverStatus
from eventcore.messaging.commands.records import (
    COMMAND_EVENTS,
    CommandReplied,
    CommandRequested,
    command_topic,
    command_type_of,
    inbox_stream,
    reply_topic,
    request_for,
)
from eventcore.messaging.commands.replies import CommandReply, Rejected, Succeeded, reply_of
from eventcore.messaging.commands.sender import CommandSender, SenderStatus

__all__ = [
    "COMMAND_EVENTS",
    "AcceptedCommands",
    "CommandEnvelope",
    "CommandReceiver",
    "CommandReplied",
    "CommandReply",
    "CommandRequested",
    "CommandSender",
    "ReceiverStatus",
    "Rejected",
    "ResultOf",
    "SenderStatus",
    "Succeeded",
    "command_topic",
    "command_type_of",
    "decode_command_envelope",
    "inbox_stream",
    "reply_of",
    "reply_topic",
    "request_for",
]
