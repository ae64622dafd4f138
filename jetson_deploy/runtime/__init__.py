"""On-device runtime: engine backends, host/device memory, and the frame pipeline.

Must keep working on Python 3.6 (JetPack 4.6, the Nano) and 3.8 (JetPack 5) and must not need torch;
the front door of a run is :mod:`.session`.
"""
