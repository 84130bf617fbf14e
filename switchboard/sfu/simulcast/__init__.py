"""Simulcast (RFC 8853): layered Producers, layer-switching Consumers, per-subscriber allocation.

``SimulcastProducer`` (producer.py) splits a publisher's encodings into ``ProducerLayer``s
(layer.py); ``SimulcastConsumer`` (consumer.py) forwards one of them; ``LayerAllocator``
(allocator.py) picks it from the subscriber's preference and REMB, and feeds dynacast.
"""

from .allocator import LayerAllocator
from .consumer import Preference, SimulcastConsumer
from .layer import ProducerLayer
from .producer import SimulcastProducer

__all__ = [
    "LayerAllocator",
    "Preference",
    "ProducerLayer",
    "SimulcastConsumer",
    "SimulcastProducer",
]
