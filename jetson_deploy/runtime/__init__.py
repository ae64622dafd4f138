"""On-device runtime: engine backends, host/device memory, and the frame pipeline.

Must keep working on Python 3.8 (JetPack 5) and must not need torch.
"""
