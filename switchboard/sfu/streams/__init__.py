"""Per-stream state of the forwarding path: what a Producer received, what a Consumer sent."""
