"""The load generator of ``benchmarks/load.py``: pre-encoded media (``media``), aiortc peers
speaking Switchboard's or Janus's signalling (``peers``), the generator's aiortc hooks
(``aiortc_hooks``) and a Janus launcher (``janus``)."""
