"""In-call data: DataProducer / DataConsumer (mediasoup's nouns) over WebRTC data channels.

Each participant's publish connection carries its two data channels (RFC 8831), ``reliable``
(ordered, fully reliable) and ``lossy`` (unordered, ``maxRetransmits: 0``, RFC 8831 §6.1 /
RFC 3758 partial reliability). What the client sends on one is its ``DataProducer``; what the
SFU sends back on the same (bidirectional) channel is its ``DataConsumer``. ``DataRouter``
(one per room) relays each message from a DataProducer to the DataConsumers of the same kind
of every other participant, or of the listed ones, with the sender's participant id stamped
by the SFU (``envelope.py``). Nothing here imports the control plane.
"""

from .config import DataConfig
from .data_consumer import DataConsumer
from .data_producer import DataProducer
from .data_router import DataRouter
from .envelope import MAX_MESSAGE_BYTES, MAX_PAYLOAD_BYTES, Envelope, EnvelopeError

__all__ = [
    "MAX_MESSAGE_BYTES",
    "MAX_PAYLOAD_BYTES",
    "DataConfig",
    "DataConsumer",
    "DataProducer",
    "DataRouter",
    "Envelope",
    "EnvelopeError",
]
